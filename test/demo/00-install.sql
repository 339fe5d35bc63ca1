-- Install the extension in a database.  It lives in its own schema,
-- "idempotency"; add it to search_path if you prefer short names.
CREATE EXTENSION idempotency;

SELECT idempotency.version();

\dx idempotency
