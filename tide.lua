-- tide.lua: the seed project's configuration (README "Configuration: tide.lua").
return {
  -- What revisions read as db.vars: 003 grants the application role its privileges. Roles
  -- belong to the cluster: create it before `tide upgrade` (README "The application role").
  vars = { app_role = os.getenv("APP_DB_ROLE") or "app" },
  -- Every table the seed creates keeps its rows behind row-level security.
  lint = { require_rls = true },
}
