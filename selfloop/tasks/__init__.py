"""selfloop.tasks: verifiable task records (prompt plus checker, tests or reference answer)."""
