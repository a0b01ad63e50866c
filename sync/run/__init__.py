"""One invocation: plan, state and lease, pacing, reading a page, writing it, recording the run."""
