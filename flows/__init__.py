"""The flows: the parent pipeline and its layer sub-flows (see the README's Architecture)."""

from logistics_pipeline.tasks.orchestration.heartbeats import end_flow_runs_without_joining_heartbeats

end_flow_runs_without_joining_heartbeats()
