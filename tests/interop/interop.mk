# interop.mk - the interop matrix (tests/interop); included by the top Makefile
#
#   make interop    starttlsd in front of Exim, Sendmail, OpenSMTPD, Courier
#                   and Postfix, each in a podman container built from
#                   Debian 12's package, and real senders in front of it;
#                   prints the matrix. As root; installs what it needs.

interop: $(PROXY_BIN)
	packaging/install-deps interop
	STARTTLSD=$(abspath $(PROXY_BIN)) tests/interop/run

.PHONY: interop

# make interop-senders   only the senders (tests/interop/senders): Postfix,
#                        Exim, OpenSMTPD, msmtp, swaks and smtplib sending
#                        through starttlsd; about a minute.
interop-senders: $(PROXY_BIN)
	packaging/install-deps interop
	STARTTLSD=$(abspath $(PROXY_BIN)) tests/interop/run --ignore=tests/interop/backends

.PHONY: interop-senders
