// Sign in and create an account. Errors the service names a field for
// are shown by that field; the rest above the form.
import { useState } from 'preact/hooks';
import { request } from '../api.js';
import { Field, PageTitle } from '../ui.jsx';

function useForm(initial) {
  const [values, setValues] = useState(initial);
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const bind = (name) => ({
    name,
    value: values[name],
    onInput: (e) => setValues((v) => ({ ...v, [name]: e.currentTarget.value })),
  });
  return { values, errors, setErrors, busy, setBusy, bind };
}

function fail(form, error, fields) {
  const field = fields.includes(error.field) ? error.field : 'form';
  form.setErrors({ [field]: error.message });
}

export function Login({ onSignedIn, notice }) {
  const form = useForm({ login: '', password: '' });
  async function submit(e) {
    e.preventDefault();
    const errors = {};
    if (!form.values.login.trim()) errors.login = 'Enter your email or username.';
    if (!form.values.password) errors.password = 'Enter your password.';
    form.setErrors(errors);
    if (Object.keys(errors).length) return;
    form.setBusy(true);
    try {
      const data = await request('Login', { input: { login: form.values.login.trim(), password: form.values.password } });
      onSignedIn(data.login);
    } catch (error) {
      fail(form, error, ['login', 'password']);
    } finally {
      form.setBusy(false);
    }
  }
  return (
    <section class="auth">
      <PageTitle>Sign in to Kairos</PageTitle>
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      {form.errors.form && (
        <p class="error-note" role="alert">
          {form.errors.form}
        </p>
      )}
      <form onSubmit={submit} noValidate>
        <Field id="login-login" label="Email or username" error={form.errors.login}>
          {(a) => <input {...a} {...form.bind('login')} autocomplete="username" required />}
        </Field>
        <Field id="login-password" label="Password" error={form.errors.password}>
          {(a) => <input {...a} {...form.bind('password')} type="password" autocomplete="current-password" required />}
        </Field>
        <button type="submit" class="primary" disabled={form.busy}>
          {form.busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
      <p>
        New here? <a href="#/register">Create an account</a>
      </p>
    </section>
  );
}

const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;

export function Register({ onSignedIn }) {
  const form = useForm({ email: '', username: '', password: '', displayName: '' });
  async function submit(e) {
    e.preventDefault();
    const v = form.values;
    const errors = {};
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v.email.trim())) errors.email = 'Enter an email address such as ada@example.org.';
    if (!USERNAME.test(v.username)) errors.username = 'Use 3–32 letters, digits, "_", "." or "-".';
    if (v.password.length < 10) errors.password = 'Use at least 10 characters.';
    form.setErrors(errors);
    if (Object.keys(errors).length) return;
    form.setBusy(true);
    try {
      const input = { email: v.email.trim(), username: v.username, password: v.password };
      if (v.displayName.trim()) input.displayName = v.displayName.trim();
      const data = await request('Register', { input });
      onSignedIn(data.register);
    } catch (error) {
      fail(form, error, ['email', 'username', 'password', 'displayName']);
    } finally {
      form.setBusy(false);
    }
  }
  return (
    <section class="auth">
      <PageTitle>Create your account</PageTitle>
      {form.errors.form && (
        <p class="error-note" role="alert">
          {form.errors.form}
        </p>
      )}
      <form onSubmit={submit} noValidate>
        <Field id="reg-email" label="Email" error={form.errors.email}>
          {(a) => <input {...a} {...form.bind('email')} type="email" autocomplete="email" required />}
        </Field>
        <Field id="reg-username" label="Username" hint="3–32 letters, digits, _ . -" error={form.errors.username}>
          {(a) => <input {...a} {...form.bind('username')} autocomplete="username" required />}
        </Field>
        <Field id="reg-display" label="Display name (optional)" error={form.errors.displayName}>
          {(a) => <input {...a} {...form.bind('displayName')} autocomplete="name" />}
        </Field>
        <Field id="reg-password" label="Password" hint="At least 10 characters" error={form.errors.password}>
          {(a) => <input {...a} {...form.bind('password')} type="password" autocomplete="new-password" required />}
        </Field>
        <button type="submit" class="primary" disabled={form.busy}>
          {form.busy ? 'Creating…' : 'Create account'}
        </button>
      </form>
      <p>
        Already registered? <a href="#/login">Sign in</a>
      </p>
    </section>
  );
}
