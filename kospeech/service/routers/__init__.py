"""The API's routers, one per resource (SPEC section 7)."""
