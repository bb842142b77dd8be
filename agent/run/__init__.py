"""One run: the LangGraph graph and its nodes, the runner that drives it (start, resume, locks, faults), the
run's frozen settings and services, the pre-flight checks, tracking and notices."""
