"""Multi-user end-edge-cloud orchestration (after Shahhosseini et al., ACM TECS 2022).

Per request, an end device picks where it runs (end, edge server, cloud) and on which model variant,
and learns online from the response times it observes. numpy only: it runs on the device.
`profiles` (reads what variants cost per tier; the format is `shared.variant_profile`'s), `hardware`
(the tiers' machines: an emulated Pi 4, the edge server, the cloud), `state` (what a device
observes), `learners`, `policies` (learners and baselines), `scenario` (who sends what, when, with
which requirement), `links` (the device's uplink trace, the WAN, the radio's report), `simulator` +
`experiment` (discrete-event comparison), `bound` (the least response any policy could get),
`report`, `agent` + `metrics` (the live orchestrator on the edge agent), `live` (real processes).
"""
