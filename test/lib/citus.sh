# test/lib/citus.sh -- Citus for the tests: build it (cached outside the
# checkout), install it into the PostgreSQL under test, and run a 3-node
# cluster (coordinator + 2 workers) on 127.0.0.1.  Sourced after common.sh,
# never executed.
#
# Source and support
#   IDEM_CITUS_TARBALL   ${CITUS_SOURCE:-$IDEM_ROOT/../shared/citus/citus-13.2.2.tar.xz}
#   idem_citus_source    sets IDEM_CITUS_TARBALL; returns 1 (after printing
#                        nothing) when the tarball is absent
#   idem_citus_supported returns 0 when $PG_CONFIG's major is one Citus 13.2.2
#                        builds against (15, 16, 17)
#
# Build and install
#   idem_citus_install   verifies the tarball's sha256, builds it once into
#       ${IDEM_CACHE:-/var/cache/idempotency}/citus-<sha256, 16 hex>-<pg key>
#   where <pg key> hashes what the binary depends on: pg_config --version,
#   --configure, --cflags and the server's pg_config.h -- not its paths, so
#   every private copy of the same server (/opt/pg15-NAME) shares one build.
#   The build is "./configure --without-libcurl", make -j2 and "make install
#   DESTDIR=<cache>/stage"; against a PostgreSQL 15 it first renames Citus's
#   static have_createdb_privilege() copy (src/include/pg_version_compat.h)
#   and its callers, since 15.20 exports a function of that name;
#   a stamp file (.complete, written last) marks it done, concurrent callers
#   wait on <dir>.lock, and the log is <dir>.log.  Installing copies the
#   staged files under the build's --pkglibdir and --sharedir into the
#   target's (whichever tree $PG_CONFIG names), then checks that citus.so and
#   citus.control are there.  As root, missing packages (liblz4-dev,
#   libzstd-dev, libkrb5-dev) are installed with apt-get.  Only the first
#   run on a machine pays the build (134 s on 2 idle cores, 336 s on 2 busy
#   ones).
#
# Cluster
#   idem_citus_start DIR   three data directories DIR/node0 (coordinator),
#       DIR/node1, DIR/node2 (workers), each listening on 127.0.0.1 and on a
#       socket in its directory, on free ports; shared_preload_libraries =
#       'citus,idempotency', max_prepared_transactions = 100; "CREATE
#       EXTENSION citus" on each, then on the coordinator
#       citus_set_coordinator_host() and citus_add_node() for the workers
#       (metadata is synced to them, so clients may use any node).  Exports
#       IDEM_CITUS_DIR and IDEM_CITUS_PORT0..2.  Database "postgres",
#       superuser "postgres", trust authentication.
#   idem_citus_stop DIR    stops the three servers (fast, then immediate)
#   idem_citus_psql N [psql args...]   psql (idem_psql options) on node N,
#       0 = coordinator, over TCP, as $PGUSER (default postgres), database
#       ${IDEM_CITUS_DB:-postgres} (PGDATABASE of the caller is ignored)
#   idem_citus_conninfo N [DB]  a libpq connection string for node N
#   idem_citus_pgbench_pair OUT SCRIPT0 SCRIPT1 [PGBENCH OPTIONS...]
#       pgbench on the coordinator (SCRIPT0) and on worker 1 (SCRIPT1) at
#       once, as postgres, each with the options and -D node=N; output in
#       OUT-0.out and OUT-1.out.  Returns 0 when both ran every transaction
#       with none failed (deadlocks and serialization failures count as
#       failed) or aborted; otherwise prints their output and returns 1.
#       Each pgbench seeds its random numbers from the operating system's
#       random source (--random-seed=rand): the default seed is the clock
#       in microseconds, and two pgbench started together sometimes read
#       the same microsecond and then draw the same "random" keys.
#
# Test files
#   test/citus/NN-name.sh, run in file-name order by test/suites/35-citus.sh
#   against one cluster shared by all of them.  Each is run with bash and
#   sources common.sh and this file itself; it finds IDEM_ROOT,
#   IDEM_RESULTS, PGBINDIR, IDEM_CITUS_DIR, IDEM_CITUS_PORTn and a scratch
#   directory of its own, IDEM_CITUS_WORK, in its environment.  00-setup.sh
#   creates the idempotency extension (Citus creates it on the workers) and
#   an ordinary login role, idem_app, on every node; later files work in
#   database postgres, in a schema of their own, grant idem_app what they
#   need, record each test with idem_pass / idem_fail and print what a
#   reader needs on failure.  A file that exits non-zero without recording
#   a failure counts as one failure.  Two recorders, which name the test
#   "$T: NAME" (T is set by the file, e.g. T=citus/lease):
#   idem_citus_all_ok NAME OUTPUT   passes when OUTPUT is one or more lines
#       and every line starts with "ok"; otherwise prints OUTPUT and fails
#   idem_citus_same NAME WANT GOT   passes when GOT equals WANT

idem_citus_source() {
	IDEM_CITUS_TARBALL=${CITUS_SOURCE:-$IDEM_ROOT/../shared/citus/citus-13.2.2.tar.xz}
	IDEM_CITUS_SHA256=6ffb1af003e08550f20e34a1544d77d82cf92ed896293d44676e2547d1d3372f
	[ -f "$IDEM_CITUS_TARBALL" ]
}

idem_citus_supported() {
	case $(idem_pg_major) in
		15|16|17) return 0 ;;
		*) return 1 ;;
	esac
}

idem_citus_build_deps() {
	local pkgs=() p need=(liblz4-dev libzstd-dev libkrb5-dev)
	# A server built with ICU includes its headers from pg_locale.h.
	grep -q '^#define USE_ICU 1' "$("$PG_CONFIG" --includedir-server)/pg_config.h" 2>/dev/null \
		&& need+=(libicu-dev)
	for p in "${need[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
	done
	command -v xz >/dev/null || pkgs+=(xz-utils)
	command -v make >/dev/null || pkgs+=(make)
	command -v gcc >/dev/null || pkgs+=(gcc)
	idem_apt_install "${pkgs[@]}"
}

# The cache directory for $PG_CONFIG (sets IDEM_CITUS_BUILD).
idem_citus_cache_dir() {
	local sum key
	sum=$(sha256sum "$IDEM_CITUS_TARBALL" | cut -d' ' -f1)
	[ "$sum" = "$IDEM_CITUS_SHA256" ] \
		|| idem_die "$IDEM_CITUS_TARBALL: sha256 $sum, expected $IDEM_CITUS_SHA256"
	key=$({
		"$PG_CONFIG" --version
		"$PG_CONFIG" --configure
		"$PG_CONFIG" --cflags
		cat "$("$PG_CONFIG" --includedir-server)/pg_config.h"
	} | sha256sum | cut -c1-8)
	IDEM_CITUS_BUILD=${IDEM_CACHE:-/var/cache/idempotency}/citus-${sum:0:16}-$key
}

idem_citus_build() {
	idem_citus_cache_dir
	idem_cached_build "$IDEM_CITUS_BUILD" \
		"Citus from $(basename "$IDEM_CITUS_TARBALL") against $("$PG_CONFIG" --version)" \
		idem_citus_build_deps idem_citus_build_steps "$(idem_pg_major)" "$IDEM_CITUS_BUILD"
}

# In the empty source directory (idem_cached_build): MAJOR DIR.
idem_citus_build_steps() {
	local major=$1 dir=$2
	tar xJf "$IDEM_CITUS_TARBALL" --strip-components=1 || return 1
	# PostgreSQL 15.20 exports have_createdb_privilege(); for servers
	# before 16 Citus defines a static copy of the same name in
	# src/include/pg_version_compat.h, which then no longer compiles.
	# Rename Citus's copy and its callers (on 16+ Citus uses the server's,
	# and the name must stay).
	if [ "$major" = 15 ]; then
		grep -q '^have_createdb_privilege(void)' src/include/pg_version_compat.h \
			|| { echo "citus.sh: have_createdb_privilege(void) not found in src/include/pg_version_compat.h" >&2; return 1; }
		grep -rl --include='*.[ch]' -w have_createdb_privilege src \
			| xargs sed -i 's/\bhave_createdb_privilege\b/citus_have_createdb_privilege/g' \
			|| return 1
		! grep -rqw --include='*.[ch]' have_createdb_privilege src \
			|| { echo "citus.sh: have_createdb_privilege still referenced after the rename" >&2; return 1; }
	fi
	# Build, stage, and note where the staged files sit (the build
	# server's directories).
	./configure --without-libcurl PG_CONFIG="$PG_CONFIG" \
		&& make -j"${IDEM_CITUS_JOBS:-2}" -s \
		&& make -s install DESTDIR="$dir/stage" \
		&& "$PG_CONFIG" --pkglibdir >"$dir/pkglibdir" \
		&& "$PG_CONFIG" --sharedir >"$dir/sharedir"
}

# Copy the staged build into $PG_CONFIG's tree (whichever copy it is).
idem_citus_install() {
	local dir from_lib from_share to_lib to_share
	idem_citus_build
	dir=$IDEM_CITUS_BUILD
	from_lib=$dir/stage$(cat "$dir/pkglibdir")
	from_share=$dir/stage$(cat "$dir/sharedir")
	to_lib=$("$PG_CONFIG" --pkglibdir)
	to_share=$("$PG_CONFIG" --sharedir)
	[ -f "$from_lib/citus.so" ] || idem_die "no citus.so in $from_lib (remove $dir and try again)"
	[ -w "$to_lib" ] || idem_die "cannot write to $to_lib: run as root, or point PG_CONFIG at a PostgreSQL tree you own"
	cp -a "$from_lib"/. "$to_lib"/ || idem_die "copying Citus libraries into $to_lib failed"
	cp -a "$from_share"/. "$to_share"/ || idem_die "copying Citus extension files into $to_share failed"
	cmp -s "$from_lib/citus.so" "$to_lib/citus.so" && [ -f "$to_share/extension/citus.control" ] \
		|| idem_die "Citus is not installed in $to_lib / $to_share after copying"
}

idem_citus_free_port() {
	python3 - <<'EOF' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

idem_citus_conninfo() {
	local n=$1 port
	port=IDEM_CITUS_PORT$n
	echo "host=127.0.0.1 port=${!port} dbname=${2:-postgres}"
}

idem_citus_psql() {
	local n=$1 port
	shift
	port=IDEM_CITUS_PORT$n
	PGHOST=127.0.0.1 PGPORT=${!port} PGDATABASE=${IDEM_CITUS_DB:-postgres} idem_psql -U "${PGUSER:-postgres}" "$@"
}

# Every transaction ran, none failed or aborted, in pgbench output FILE.
idem_citus_pgbench_clean() {
	grep -qE 'actually processed: ([0-9]+)/\1$' "$1" \
		&& grep -q 'number of failed transactions: 0 ' "$1" \
		&& ! grep -qi 'aborted\|error' "$1"
}

idem_citus_pgbench_pair() {
	local out=$1 s0=$2 s1=$3 n rc=0 pids=()
	shift 3
	"$PGBINDIR/pgbench" -n --random-seed=rand -h 127.0.0.1 -p "$IDEM_CITUS_PORT0" -U postgres "$@" -D node=0 -f "$s0" postgres \
		>"$out-0.out" 2>&1 &
	pids+=($!)
	"$PGBINDIR/pgbench" -n --random-seed=rand -h 127.0.0.1 -p "$IDEM_CITUS_PORT1" -U postgres "$@" -D node=1 -f "$s1" postgres \
		>"$out-1.out" 2>&1 &
	pids+=($!)
	for n in 0 1; do
		if ! wait "${pids[$n]}" || ! idem_citus_pgbench_clean "$out-$n.out"; then
			rc=1
			echo "      pgbench on node $n:"
			grep -v '^$' "$out-$n.out" | sed 's/^/      /' | head -n 20
		fi
	done
	return $rc
}

idem_citus_start() {
	local dir=$1 n port ports=() used
	IDEM_CITUS_DIR=$dir
	export IDEM_CITUS_DIR
	mkdir -p "$dir"
	idem_is_root && chown "$(idem_server_user)" "$dir"
	chmod 755 "$dir"
	for n in 0 1 2; do
		# Free, and not one we already picked.
		while :; do
			port=$(idem_citus_free_port)
			used=0
			for p in "${ports[@]}"; do [ "$p" = "$port" ] && used=1; done
			[ $used = 0 ] && break
		done
		ports+=("$port")
		eval "IDEM_CITUS_PORT$n=$port; export IDEM_CITUS_PORT$n"
		# idem_cluster_start exports PGHOST and friends: in a subshell.
		(
			PGPORT=$port idem_cluster_start "$dir/node$n" <<EOF
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'citus,idempotency'
max_prepared_transactions = 100
max_connections = 150
shared_buffers = 32MB
synchronous_commit = off
log_line_prefix = '%m [%p] node$n %q%a '
EOF
		) || idem_die "Citus node $n did not start"
		idem_citus_psql "$n" -c 'CREATE EXTENSION citus' \
			|| idem_die "CREATE EXTENSION citus failed on node $n"
	done
	idem_citus_psql 0 -c "SELECT citus_set_coordinator_host('127.0.0.1', $IDEM_CITUS_PORT0)" >/dev/null \
		&& idem_citus_psql 0 -c "SELECT citus_add_node('127.0.0.1', $IDEM_CITUS_PORT1)" >/dev/null \
		&& idem_citus_psql 0 -c "SELECT citus_add_node('127.0.0.1', $IDEM_CITUS_PORT2)" >/dev/null \
		|| idem_die "adding the Citus workers failed"
}

idem_citus_stop() {
	local n
	for n in 0 1 2; do
		idem_cluster_stop "$1/node$n"
	done
}

# idem_citus_all_ok NAME OUTPUT: every line of OUTPUT is "ok ..." (and
# there is one).
idem_citus_all_ok() {
	local name=$1 out=$2
	if [ -n "$out" ] && ! grep -qv '^ok' <<<"$out"; then
		idem_pass "$T: $name"
	else
		printf '%s\n' "$out" | sed 's/^/      /'
		idem_fail "$T: $name"
	fi
}

# idem_citus_same NAME WANT GOT
idem_citus_same() {
	if [ "$2" = "$3" ]; then
		idem_pass "$T: $1"
	else
		printf '      want: %s\n      got:  %s\n' "$2" "$3"
		idem_fail "$T: $1"
	fi
}
