//! Multi-document transactions, where the deployment has them.
//!
//! **Support** is read once from `hello`: a replica-set member (`setName`)
//! or a `mongos` (`msg: "isdbgrid"`) runs transactions and change streams
//! (Atlas, the surrogate); a standalone `mongod` runs neither, and the
//! writers fall back to an ordered sequence of single-document writes.
//!
//! **Retries** follow MongoDB's transaction guidance: the whole body runs
//! again on `TransientTransactionError` (a stepdown, a write conflict with
//! a concurrent writer), on any other transient error inside the body (an
//! aborted body left nothing behind) and on a duplicate key (a concurrent
//! transaction committed the same unique key first; running again reads
//! it), and the
//! commit alone is retried on `UnknownTransactionCommitResult`. Unlike the
//! driver's `with_transaction` (which retries for 120 s), everything stays
//! inside one operation deadline, after which the answer is UNAVAILABLE and
//! nothing of the body is applied.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use mongodb::{
    ClientSession,
    bson::doc,
    error::{TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT},
};

use super::Db;
use crate::error::{ApiError, ApiResult, is_duplicate_key, is_transient};

/// Runs a driver operation in `$session` (a `&mut Option<&mut
/// ClientSession>`: the transaction of [`Db::as_one_unit`]'s body) when
/// there is one, else on its own.
macro_rules! in_session {
    ($session:expr, $op:expr) => {
        match $session.as_deref_mut() {
            Some(s) => $op.session(s).await,
            None => $op.await,
        }
    };
}
pub(crate) use in_session;

/// What the deployment can do, read from `hello` once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// Multi-document transactions (replica set or sharded cluster).
    pub transactions: bool,
    /// Change streams (the same deployments).
    pub change_streams: bool,
}

impl Topology {
    /// Reads a `hello` reply.
    pub fn from_hello(hello: &mongodb::bson::Document) -> Self {
        let replicated =
            hello.contains_key("setName") || hello.get_str("msg").is_ok_and(|m| m == "isdbgrid");
        Topology {
            transactions: replicated,
            change_streams: replicated,
        }
    }
}

/// Shortest pause between two runs of a transaction body.
const BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause: a stepdown takes a moment to settle.
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// Longest wait for an abort: it needs a selectable primary, and the
/// answer must not wait for one past the deadline (an abort that does not
/// get through is done by the driver in the background, and the server
/// ends an abandoned transaction at its lifetime limit).
const ABORT_WAIT: Duration = Duration::from_millis(500);

/// Aborts the session's transaction, waiting at most `ABORT_WAIT` (or
/// `left`, if longer); whether it finished in time.
async fn abort(session: &mut ClientSession, left: Duration) -> bool {
    tokio::time::timeout(left.max(ABORT_WAIT), session.abort_transaction())
        .await
        .is_ok()
}

/// Pause before asking again whether a commit went through.
const COMMIT_PAUSE: Duration = Duration::from_millis(50);

/// The pause before run `attempt` (1 for the first re-run): exponential,
/// with full jitter, so that copies of one report racing each other (they
/// meet on a write conflict or on the key's unique index) do not run again
/// in lockstep and meet again.
fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let ceiling = BACKOFF.saturating_mul(1 << attempt.min(6)).min(BACKOFF_MAX);
    let jitter = rand::thread_rng().gen_range(0..=ceiling.as_millis() as u64);
    BACKOFF / 2 + Duration::from_millis(jitter)
}

impl Db {
    /// What the deployment supports; asked once, then remembered (an
    /// unreachable server is UNAVAILABLE and asked again next time).
    pub async fn topology(&self) -> ApiResult<Topology> {
        self.topology
            .get_or_try_init(|| async {
                let hello = self.run(self.db.run_command(doc! { "hello": 1 })).await?;
                let t = Topology::from_hello(&hello);
                tracing::info!(
                    transactions = t.transactions,
                    change_streams = t.change_streams,
                    "database topology"
                );
                Ok(t)
            })
            .await
            .copied()
    }

    /// The topology if it is known already (for `/ready`).
    pub fn known_topology(&self) -> Option<Topology> {
        self.topology.get().copied()
    }

    /// Runs a write `body` as one unit: in a transaction where the
    /// deployment has them (`Some(session)`); elsewhere (a standalone
    /// `mongod`, `None`) as its ordered single writes under one deadline.
    pub async fn as_one_unit<C, R, F>(&self, context: C, mut body: F) -> ApiResult<R>
    where
        C: Send,
        R: Send,
        F: for<'s> FnMut(
                Option<&'s mut ClientSession>,
                &'s mut C,
            ) -> BoxFuture<'s, mongodb::error::Result<R>>
            + Send,
    {
        if self.topology().await?.transactions {
            self.transaction(context, |s, c| body(Some(s), c)).await
        } else {
            let mut context = context;
            super::with_deadline(self.op_timeout, body(None, &mut context)).await
        }
    }

    /// Runs `body` in one transaction and commits it, retrying as described
    /// in the module documentation, within one operation deadline. `body`
    /// must use the session for every operation and return the driver's
    /// errors unchanged (answers it decides itself go through
    /// `mongodb::error::Error::custom(ApiError)`).
    pub async fn transaction<C, R, F>(&self, mut context: C, mut body: F) -> ApiResult<R>
    where
        C: Send,
        R: Send,
        F: for<'s> FnMut(
                &'s mut ClientSession,
                &'s mut C,
            ) -> BoxFuture<'s, mongodb::error::Result<R>>
            + Send,
    {
        let started = Instant::now();
        let budget = self.op_timeout;
        let left = || budget.saturating_sub(started.elapsed());
        let mut session = self.run(self.client.start_session()).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.run(session.start_transaction()).await?;
            let ran = tokio::time::timeout(left(), body(&mut session, &mut context)).await;
            let value = match ran {
                Ok(Ok(value)) => value,
                Ok(Err(e)) => {
                    if !abort(&mut session, left()).await {
                        // Dropping it aborts in the background; the next
                        // run takes a fresh session.
                        session = self.run(self.client.start_session()).await?;
                    }
                    // Nothing of an aborted body stands, so any transient
                    // failure inside it (not only those labelled
                    // TransientTransactionError) may simply run it again.
                    let again = e.get_custom::<ApiError>().is_none()
                        && (is_transient(&e) || is_duplicate_key(&e));
                    let pause = backoff(attempt);
                    if again && left() > pause {
                        tracing::debug!(error = %e, attempt, "transaction body failed; running it again");
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    return Err(ApiError::from(e));
                }
                Err(elapsed) => {
                    abort(&mut session, ABORT_WAIT).await;
                    return Err(ApiError::from(elapsed));
                }
            };
            let pause = backoff(attempt);
            loop {
                let committed = tokio::time::timeout(left(), session.commit_transaction()).await;
                match committed {
                    Ok(Ok(())) => return Ok(value),
                    // Did it commit? Asking again is safe: a commit is
                    // idempotent, and the driver resends it with majority.
                    Ok(Err(e))
                        if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                            && left() > COMMIT_PAUSE =>
                    {
                        tracing::debug!(error = %e, "commit result unknown; committing again");
                        tokio::time::sleep(COMMIT_PAUSE).await;
                    }
                    Ok(Err(e))
                        if e.contains_label(TRANSIENT_TRANSACTION_ERROR) && left() > pause =>
                    {
                        tracing::debug!(error = %e, "commit failed transiently; running again");
                        tokio::time::sleep(pause).await;
                        break;
                    }
                    Ok(Err(e)) => return Err(ApiError::from(e)),
                    Err(elapsed) => return Err(ApiError::from(elapsed)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_sets_and_mongos_have_transactions_standalones_not() {
        let rs = Topology::from_hello(&doc! { "isWritablePrimary": true, "setName": "rs0" });
        assert!(rs.transactions && rs.change_streams);
        let mongos = Topology::from_hello(&doc! { "isWritablePrimary": true, "msg": "isdbgrid" });
        assert!(mongos.transactions);
        let standalone = Topology::from_hello(&doc! { "isWritablePrimary": true });
        assert!(!standalone.transactions && !standalone.change_streams);
    }
}
