"""Announcing a public address behind NAT: host candidates of an SDP answer rewritten, sockets unchanged.

On a server with a 1:1 NAT (a cloud VM with a public IP in front of a private one) the ICE
library binds and reports the private address, which browsers cannot reach. The server keeps
binding it and announces `public_ip` with the same ports instead; packets the NAT forwards
arrive on the bound sockets, and ICE matches them by credentials, not by address.
"""

from __future__ import annotations

import ipaddress


def announce_public_address(sdp: str, public_ip: str) -> str:
    """`sdp` with every host candidate's address (and the `c=` lines naming one) replaced by `public_ip`."""
    if not public_ip:
        return sdp
    ipaddress.ip_address(public_ip)  # a ValueError here is a configuration mistake
    replaced: set[str] = set()
    lines = sdp.split("\r\n")
    for index, line in enumerate(lines):
        if not line.startswith("a=candidate:"):
            continue
        fields = line.split(" ")
        # foundation component transport priority address port "typ" type …
        if len(fields) >= 8 and fields[6] == "typ" and fields[7] == "host":
            replaced.add(fields[4])
            fields[4] = public_ip
            lines[index] = " ".join(fields)
    family = "IP6" if ":" in public_ip else "IP4"
    for index, line in enumerate(lines):
        if line.startswith("c=IN ") and line.split(" ")[-1] in replaced:
            lines[index] = f"c=IN {family} {public_ip}"
    return "\r\n".join(lines)
