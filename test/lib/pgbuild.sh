# test/lib/pgbuild.sh -- build PostgreSQL from a source tarball, cached
# outside the checkout.  Sourced (after common.sh), never executed.
#
#   idem_pg_build TARBALL [CONFIGURE ARGS...]
#
# Builds and installs the tarball's server with the given configure arguments
# (--prefix is added) into
#
#   ${IDEM_CACHE:-/var/cache/idempotency}/pg-<tarball sha256, 16 hex>-<flags hash>
#
# and sets IDEM_PG_PREFIX to that directory.  A build is complete once its
# stamp file (.complete, written last) exists; then nothing is done, so only
# the first run on a machine pays.  Concurrent callers wait on a lock.  The
# tree also keeps the source's src/tools/valgrind.supp.  As root, missing
# build tools (bison, flex, ...) are installed with apt-get.  Build output
# goes to <dir>.log; IDEM_PG_JOBS sets make -j (default: number of CPUs).
#
#   idem_pg_source
#
# Sets IDEM_PG_SOURCE to the tarball to build: PG_SOURCE, by default
# ../shared/pg/postgresql-18.3.tar.xz next to the checkout.  Without that
# default it prints "skipped: no PostgreSQL source" and exits 0 (a PG_SOURCE
# that does not exist is an error).
#
#   idem_pg_source_found
#
# The same without the exit: returns 1 when the default tarball is missing.

idem_pg_source_found() {
	if [ -n "${PG_SOURCE:-}" ]; then
		[ -f "$PG_SOURCE" ] || idem_die "PG_SOURCE=$PG_SOURCE: no such file"
		IDEM_PG_SOURCE=$PG_SOURCE
	else
		IDEM_PG_SOURCE=$IDEM_ROOT/../shared/pg/postgresql-18.3.tar.xz
		[ -f "$IDEM_PG_SOURCE" ] || return 1
	fi
}

idem_pg_source() {
	if ! idem_pg_source_found; then
		echo "skipped: no PostgreSQL source (set PG_SOURCE=path/to/postgresql-X.Y.tar.xz)"
		exit 0
	fi
}

idem_pg_build_deps() {
	local pkgs=()
	command -v bison >/dev/null || pkgs+=(bison)
	command -v flex >/dev/null || pkgs+=(flex)
	command -v make >/dev/null || pkgs+=(make)
	command -v gcc >/dev/null || pkgs+=(gcc)
	command -v xz >/dev/null || pkgs+=(xz-utils)
	[ -f /usr/include/zlib.h ] || pkgs+=(zlib1g-dev)
	perl -MIPC::Run -e 1 2>/dev/null || pkgs+=(libipc-run-perl)
	idem_apt_install "${pkgs[@]}"
}

idem_pg_build() {
	local tarball=$1 sum key dir
	shift
	[ -f "$tarball" ] || idem_die "no PostgreSQL source at $tarball"
	sum=$(sha256sum "$tarball" | cut -c1-16)
	key=$(printf '%s\n' "$@" | sha256sum | cut -c1-8)
	dir=${IDEM_CACHE:-/var/cache/idempotency}/pg-$sum-$key
	IDEM_PG_PREFIX=$dir
	export IDEM_PG_PREFIX
	idem_cached_build "$dir" "PostgreSQL from $(basename "$tarball") ($*)" \
		idem_pg_build_deps idem_pg_build_steps "$tarball" "$dir" "$@"
}

# In the empty source directory (idem_cached_build): TARBALL PREFIX ARGS...
idem_pg_build_steps() {
	local tarball=$1 prefix=$2
	shift 2
	tar xJf "$tarball" --strip-components=1 \
		&& ./configure --prefix="$prefix" "$@" \
		&& make -j"${IDEM_PG_JOBS:-$(nproc)}" -s \
		&& make -s install \
		&& cp src/tools/valgrind.supp "$prefix/valgrind.supp" \
		&& printf '%s\n' "$(basename "$tarball")" "$@" >"$prefix/.configure-args"
}
