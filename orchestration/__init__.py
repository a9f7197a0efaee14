"""Multi-user end-edge-cloud orchestration (after Shahhosseini et al., ACM TECS 2022).

Per request, an end device picks where it runs (end, edge server, cloud) and on which model variant,
and learns online from the response times it observes. numpy only: it runs on the device.
`profiles` (what variants cost per tier), `state` (what a device observes), `learners`, `policies`
(learners and baselines), `simulator` + `experiment` (discrete-event comparison), `report`,
`client` + `agent` + `metrics` (the live orchestrator on the edge agent), `live` (real processes).
"""
