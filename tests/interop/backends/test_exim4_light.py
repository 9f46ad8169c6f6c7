"""Exim 4.96 as Debian installs it by default (exim4-daemon-light, built
without PROXY support and older than Exim's XCLIENT, 4.97) behind
starttlsd with client_addr = transparent; the same conf/backends/exim4."""

from suite import *  # noqa: F401,F403
from suite import Backend
from test_exim4 import BACKEND as HEAVY

BACKEND = Backend(**dict(vars(HEAVY), image="exim4", client_addr="transparent"))
