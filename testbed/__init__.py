"""The link testbed: the edge and the cloud in two network namespaces joined by a shaped veth pair.

`profiles` names the links (lan, wifi, lte, 3g), `netns` builds and tears down the namespaces and the
`tc` shaping, `delay_proxy` is the user-space delay emulation used where the kernel has no netem,
`linkcheck` measures what a link really delivers; `device` emulates a slower device on this host and
`services` starts and stops the servers. It sits below `edgecloud/`, `splitting/` and `orchestration/`,
which all use it, and imports none of them (`edgecloud/evaluation/over_link.py` runs `edgecloud eval`
across a link). The command line is `python -m testbed` (deploy/testbed/testbed.sh wraps it).
"""
