"""CLI sub-command of simulator validation (validate); torch stays inside the handler."""
