"""Development tools: embedded Postgres and Redis, the local cluster and its balancer."""
