# lib.sh - helpers shared by the package tests (sourced, bash)

say() { echo "[$TEST_NAME] $*" >&2; }
fail() { echo "[$TEST_NAME] FAIL: $*" >&2; exit 1; }

# free_port - a 127.0.0.1 port nothing listens on: bound to port 0, then closed
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT SECONDS - until something accepts on 127.0.0.1:PORT
wait_port() {
	python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, deadline = int(sys.argv[1]), time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(1)
PY
}

# start_sink DIR - the recording sink on 127.0.0.1, port 0; sets SINK_PID, SINK_PORT
start_sink() {
	mkdir -p "$1/mail"
	python3 -u "$REPO/tests/sink/recording_sink.py" --listen 127.0.0.1:0 --record "$1/mail" \
		>"$1/sink.out" 2>"$1/sink.err" &
	SINK_PID=$!
	local i
	for i in $(seq 50); do
		SINK_PORT=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$1/sink.out")
		[ -n "$SINK_PORT" ] && return 0
		sleep 0.1
	done
	fail "the recording sink did not start: $(cat "$1/sink.err")"
}

# smtp_session PORT DIR NAME - one STARTTLS session with swaks; the message
# must reach the sink recorded in DIR/mail with the marker NAME in it
smtp_session() {
	local port=$1 dir=$2 name=$3 before after
	before=$(ls "$dir/mail" | grep -c '^msg-.*\.eml$' || true)
	swaks --server "127.0.0.1:$port" --tls --tls-protocol tlsv1_3 --timeout 20 \
		--from sender@example.org --to rcpt@example.org --helo client.example.org \
		--header "Subject: $name" --body "package test $name" >"$dir/swaks-$name.log" 2>&1 ||
		{ cat "$dir/swaks-$name.log" >&2; fail "$name: swaks failed"; }
	grep -q '^<-  220 2.0.0 Ready to start TLS' "$dir/swaks-$name.log" ||
		fail "$name: no 220 to STARTTLS"
	grep -q 'TLS started' "$dir/swaks-$name.log" || fail "$name: TLS did not start"
	after=$(ls "$dir/mail" | grep -c '^msg-.*\.eml$' || true)
	[ "$after" -eq $((before + 1)) ] || fail "$name: the sink recorded $before then $after messages"
	grep -l "package test $name" "$dir"/mail/msg-*.eml >/dev/null ||
		fail "$name: the message the sink recorded is not the one sent"
	say "$name: STARTTLS session delivered through the proxy"
}
