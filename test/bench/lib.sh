# test/bench/lib.sh -- the vocabulary of benchmark group files.
#
# A group file (test/bench/groups/NN-name.sh) is sourced in a subshell and
# looks like this:
#
#   bench_title "hit path: the key exists"
#   bench_setup <<'SQL'
#   CREATE TABLE ...;                      -- runs once, in the bench database
#   SQL
#   bench_variant ours 1 <<'PGB'           -- name, clients, pgbench script
#   \set k random(1, 10000)
#   SELECT ... :k ...;
#   PGB
#   bench_variant plain 1 <<'PGB'
#   ...
#   PGB
#   bench_ratio ours plain 0.90            -- report ours/plain, target >= 0.90
#   bench_run                              -- rounds, medians, table, CSV
#   bench_report "lost rows under a race" 0 0   -- any extra figure: name value [target]
#
# bench_variant takes extra pgbench options after the client count (for
# example -D key=value), and --guc=NAME=VALUE for a server setting of that
# variant's sessions (passed in PGOPTIONS).  Variants run with -M prepared.
# A variant's script is kept in "$BENCH_GROUP_DIR/NAME.pgb", so a later
# variant can run the same script with other options by reading it from there.

BENCH_GROUP=
BENCH_GROUP_DIR=
BENCH_VARIANTS=()
BENCH_RATIOS=()

bench_begin() {
	BENCH_GROUP=$1
	BENCH_GROUP_DIR=$BENCH_OUT/$1
	mkdir -p "$BENCH_GROUP_DIR"
	BENCH_VARIANTS=()
	BENCH_RATIOS=()
}

bench_title() {
	echo
	echo "== $BENCH_GROUP: $*   [$BENCH_ROUNDS rounds x $BENCH_SECONDS s, variants interleaved]"
}

bench_setup() {
	idem_psql -f - >/dev/null
}

# bench_variant NAME CLIENTS [PGBENCH OPTIONS...] <<script
bench_variant() {
	local name=$1 clients=$2
	shift 2
	cat >"$BENCH_GROUP_DIR/$name.pgb"
	printf '%s\n' "$*" >"$BENCH_GROUP_DIR/$name.opts"
	echo "$clients" >"$BENCH_GROUP_DIR/$name.clients"
	BENCH_VARIANTS+=("$name")
}

# bench_ratio NUMERATOR DENOMINATOR [MIN_TARGET]
bench_ratio() {
	BENCH_RATIOS+=("$1 $2 ${3:--}")
}

# Median of the numbers on stdin.
bench_median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Next transaction id and WAL insert position, without taking an xid.
bench_counters() {
	idem_psql -Atc "SELECT pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()), pg_catalog.pg_current_wal_insert_lsn() OPERATOR(pg_catalog.-) '0/0'::pg_catalog.pg_lsn"
}

# bench_one VARIANT ROUND: one pgbench run; appends to rounds.csv.
bench_one() {
	local v=$1 round=$2 clients jobs out before after tx tps x1 w1 x2 w2 o
	local opts=() pgoptions=${PGOPTIONS:-}
	for o in $(cat "$BENCH_GROUP_DIR/$v.opts"); do
		case $o in
			--guc=*) pgoptions+=" -c ${o#--guc=}" ;;
			*) opts+=("$o") ;;
		esac
	done
	clients=$(cat "$BENCH_GROUP_DIR/$v.clients")
	jobs=$clients
	[ "$jobs" -gt "$(nproc)" ] && jobs=$(nproc)
	out=$BENCH_GROUP_DIR/$v.round$round.log
	before=$(bench_counters)
	if ! PGOPTIONS=$pgoptions "$PGBINDIR/pgbench" -n -M prepared -c "$clients" -j "$jobs" \
		-T "$BENCH_SECONDS" "${opts[@]}" -f "$BENCH_GROUP_DIR/$v.pgb" >"$out" 2>&1; then
		echo "pgbench failed for $BENCH_GROUP/$v:" >&2
		tail -n 20 "$out" >&2
		return 1
	fi
	after=$(bench_counters)
	if grep -q '^number of failed transactions: [1-9]' "$out"; then
		echo "pgbench reported failed transactions for $BENCH_GROUP/$v:" >&2
		tail -n 20 "$out" >&2
		return 1
	fi
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out")
	[ -n "$tps" ] || tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | tail -n 1)
	x1=${before%%|*}; w1=${before##*|}; x2=${after%%|*}; w2=${after##*|}
	awk -v g="$BENCH_GROUP" -v v="$v" -v r="$round" -v c="$clients" -v tps="$tps" -v tx="$tx" \
		-v w="$((w2 - w1))" -v x="$((x2 - x1))" \
		'BEGIN { printf "%s,%s,%d,%d,%.1f,%d,%.1f,%.3f\n", g, v, r, c, tps, tx, (tx ? w / tx : 0), (tx ? x / tx : 0) }' \
		>>"$BENCH_OUT/rounds.csv"
}

# Column of rounds.csv for one variant of this group: bench_column VARIANT N
bench_column() {
	awk -F, -v g="$BENCH_GROUP" -v v="$1" -v n="$2" '$1 == g && $2 == v { print $n }' "$BENCH_OUT/rounds.csv"
}

bench_run() {
	local round i n v rotated
	n=${#BENCH_VARIANTS[@]}
	for ((round = 1; round <= BENCH_ROUNDS; round++)); do
		for ((i = 0; i < n; i++)); do
			v=${BENCH_VARIANTS[$(((i + round - 1) % n))]}
			bench_one "$v" "$round" || exit 1   # the group runs in a subshell: fail it
		done
	done

	printf '%-28s %7s %14s %12s %10s\n' variant clients "tps (median)" "WAL B/call" "xids/call"
	for v in "${BENCH_VARIANTS[@]}"; do
		local tps wal xid
		tps=$(bench_column "$v" 5 | bench_median)
		wal=$(bench_column "$v" 7 | bench_median)
		xid=$(bench_column "$v" 8 | bench_median)
		printf '%-28s %7s %14.1f %12.1f %10.3f\n' "$v" "$(cat "$BENCH_GROUP_DIR/$v.clients")" "$tps" "$wal" "$xid"
		echo "$BENCH_GROUP,tps,$v,$tps,," >>"$BENCH_OUT/summary.csv"
		echo "$BENCH_GROUP,wal_bytes_per_call,$v,$wal,," >>"$BENCH_OUT/summary.csv"
		echo "$BENCH_GROUP,xids_per_call,$v,$xid,," >>"$BENCH_OUT/summary.csv"
	done

	[ ${#BENCH_RATIOS[@]} -gt 0 ] || return 0
	# Targets are judged by the full benchmark only: one short round of the
	# smoke run says nothing about speed.
	if [ "${BENCH_SMOKE:-0}" = 1 ]; then
		printf '%-28s %7s %14s\n' ratio "" "median"
	else
		printf '%-28s %7s %14s %12s\n' ratio "" "median" "target"
	fi
	local spec a b target ratio met
	for spec in "${BENCH_RATIOS[@]}"; do
		read -r a b target <<<"$spec"
		# Median of the per-round ratios: each round measures both variants
		# back to back, so pairing them cancels slow drifts of the machine.
		ratio=$(paste -d' ' <(bench_column "$a" 5) <(bench_column "$b" 5) \
			| awk '$2 > 0 { print $1 / $2 }' | bench_median)
		met=
		if [ "${BENCH_SMOKE:-0}" = 1 ]; then
			[ "$target" != - ] && met="not judged"
			printf '%-28s %7s %13.2fx %s\n' "$a / $b" "" "$ratio" "${met:+(smoke: not judged)}"
		else
			if [ "$target" != - ]; then
				met=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print (r >= t) ? "met" : "MISSED" }')
			fi
			printf '%-28s %7s %13.2fx %12s %s\n' "$a / $b" "" "$ratio" "${target/#-/}" "$met"
		fi
		echo "$BENCH_GROUP,ratio,$a / $b,$ratio,$target,$met" >>"$BENCH_OUT/summary.csv"
	done
}

# bench_report NAME VALUE [TARGET]: any other figure a group measures.
bench_report() {
	if [ "${BENCH_SMOKE:-0}" = 1 ] && [ -n "${3:-}" ]; then
		printf '%-44s %12s %s\n' "$1" "$2" "(smoke: not judged)"
	else
		printf '%-44s %12s %12s\n' "$1" "$2" "${3:-}"
	fi
	echo "$BENCH_GROUP,figure,$1,$2,${3:-}," >>"$BENCH_OUT/summary.csv"
}
