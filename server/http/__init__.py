"""HTTP edge helpers shared by every capability's routes: bodies, query params, pagination, OpenAPI, limits."""
