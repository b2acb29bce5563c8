// Every GraphQL operation the app sends, by name. The build gives each its
// SHA-256 id and writes them to the trusted-documents manifest
// (assets/webapp/persisted-query-manifest.json), so the service can run
// with PERSISTED_QUERIES=allowlist and accept nothing else. Each document
// stands alone (no shared fragments): its text is what is hashed.
// Only fields the running schema has (schema/kairos.graphql) are used.

export const operations = {
  Login: `mutation Login($input: LoginInput!) {
  login(input: $input) { token expiresAt user { id username displayName role } }
}`,
  Register: `mutation Register($input: RegisterInput!) {
  register(input: $input) { token expiresAt user { id username displayName role } }
}`,
  Me: `query Me {
  me { id username displayName email role }
}`,
  Catalogue: `query Catalogue($first: Int, $after: String, $category: String, $level: Level, $search: String) {
  modules(first: $first, after: $after, category: $category, level: $level, search: $search) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes {
      id slug title summary category level durationMinutes published
      myProgress { status score }
    }
  }
}`,
  Categories: `query Categories {
  progressStats { byCategory { category } }
}`,
  ModuleBySlug: `query ModuleBySlug($slug: String!) {
  module(slug: $slug) {
    id slug title summary category level tags durationMinutes content
    myProgress { status score timeSpentSeconds attempts startedAt completedAt }
  }
}`,
  StartModule: `mutation StartModule($moduleId: ID!) {
  startModule(moduleId: $moduleId) { status score timeSpentSeconds attempts startedAt completedAt }
}`,
  RecordProgress: `mutation RecordProgress($input: ProgressInput!) {
  recordProgress(input: $input) { status score timeSpentSeconds attempts startedAt completedAt }
}`,
  MyStats: `query MyStats {
  progressStats {
    modulesTotal modulesStarted modulesInProgress modulesCompleted completionRate
    totalTimeSeconds averageScore lastActivityAt currentStreakDays
    byCategory { category modulesTotal modulesCompleted timeSpentSeconds averageScore }
  }
}`,
  History: `query History($first: Int, $after: String) {
  history(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id kind at timeSpentSeconds score module { id slug title } }
  }
}`,
  RecentActivity: `query RecentActivity($first: Int) {
  history(first: $first) { nodes { at timeSpentSeconds } }
}`,
  UnreadCount: `query UnreadCount {
  unreadNotificationCount
}`,
  Notifications: `query Notifications($first: Int, $after: String, $unreadOnly: Boolean) {
  notifications(first: $first, after: $after, unreadOnly: $unreadOnly) {
    pageInfo { hasNextPage endCursor }
    nodes { id message read createdAt module { id slug title } }
  }
}`,
  MarkRead: `mutation MarkRead($ids: [ID!]) {
  markNotificationsRead(ids: $ids)
}`,
  AdminDashboard: `query AdminDashboard {
  adminDashboard {
    usersTotal activeUsersLast7Days modulesTotal modulesPublished completionsTotal averageScore
    topModules(limit: 8) {
      learnersStarted learnersCompleted completionRate averageScore
      module { id title }
    }
  }
}`,
  Users: `query Users($first: Int, $after: String, $search: String) {
  users(first: $first, after: $after, search: $search) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { id username email displayName role createdAt }
  }
}`,
  AdminModules: `query AdminModules($first: Int, $after: String, $search: String) {
  modules(first: $first, after: $after, search: $search) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { id slug title category level position published updatedAt }
  }
}`,
  AdminModule: `query AdminModule($id: ID!) {
  module(id: $id) {
    id slug title summary category level tags durationMinutes position published content
  }
}`,
  CreateModule: `mutation CreateModule($input: ModuleInput!) {
  createModule(input: $input) { id slug published }
}`,
  UpdateModule: `mutation UpdateModule($id: ID!, $input: ModuleUpdateInput!) {
  updateModule(id: $id, input: $input) { id slug published }
}`,
  DeleteModule: `mutation DeleteModule($id: ID!) {
  deleteModule(id: $id)
}`,
  NotificationJobs: `query NotificationJobs($first: Int, $after: String) {
  notificationJobs(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node { id state moduleId message total notified attempts lastError createdAt finishedAt } }
  }
}`,
  CacheStats: `query CacheStats {
  cacheStats { backend redisConfigured redisAvailable hits misses hitRate memoryEntries breaker errors }
}`,
  ClearCache: `mutation ClearCache($prefix: String) {
  clearCache(prefix: $prefix)
}`,
};
