"""The link testbed: the edge and the cloud in two network namespaces joined by a shaped veth pair.

`profiles` names the links (lan, wifi, lte, 3g), `netns` builds and tears down the namespaces and the
`tc` shaping, `delay_proxy` is the user-space delay emulation used where the kernel has no netem,
`linkcheck` measures what a link really delivers, and `over_link` runs `edgecloud eval` across it.
The command line is `python -m edgecloud.evaluation.testbed` (deploy/testbed/testbed.sh wraps it).
"""
