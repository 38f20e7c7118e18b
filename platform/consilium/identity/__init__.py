"""Who is calling and what they may do: OpenID Connect login, bearer and service tokens, users
and their roles, grants of studies, the access policy, and the dev IdP of the embedded default."""
