"""Security: who a connection is (TLS and SASL authentication), what it may do (the ACL
authorizer) and how much of the node it may use (quotas). docs/security.md explains the
model; the modules here hold the pure logic, the transport and handlers call into it."""
