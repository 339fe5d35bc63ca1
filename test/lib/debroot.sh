# test/lib/debroot.sh -- a Debian chroot with a Debian-packaged PostgreSQL,
# cached outside the checkout, and running test/run inside it.  Sourced
# (after common.sh), never executed.  Root only: debootstrap, chroot and
# mount need it.
#
# What it is for: Debian 12 packages PostgreSQL 15 only, and the Debian
# archive serves no source packages here, but Debian 13 ("trixie") packages
# PostgreSQL 17.  Its binaries need Debian 13's C library, so they run in a
# Debian 13 chroot; the kernel, the network and the CPUs are the host's.
#
#   idem_debian_root SUITE MAJOR
#
# Makes (once per machine) the chroot
#
#   ${IDEM_CACHE:-/var/cache/idempotency}/debian-SUITE-pgMAJOR-<hash>
#
# with debootstrap (variant minbase) and apt-get install of
# postgresql-MAJOR, its server headers and what test/run installs on a host
# (make, gcc, Perl's IPC::Run, Node.js, npm, pgbouncer, redis-server,
# gnuplot, valgrind, Citus's build dependencies), so that a run inside
# installs nothing.  <hash> covers the package list, so a changed list is a
# new chroot.  Services are never started inside it: policy-rc.d refuses
# every start, and postgresql-common creates no cluster.  Sets IDEM_DEB_ROOT.
#
#   idem_debian_run ROOT DIR CMD [ARG...]
#
# Runs CMD in ROOT with /proc, /dev and DIR bind-mounted at their own paths
# (DIR: the checkout's parent, so that ../shared is found as on the host),
# and the host's /etc/ssl/certs read-only over the chroot's (a machine whose
# HTTPS goes through a proxy of its own trusts the proxy's CA there: npm's
# registry), with a clean environment (PATH, HOME, LANG, TMPDIR=/tmp, and
# the caller's CI, IDEM_PG_JOBS and CA settings: NODE_EXTRA_CA_CERTS,
# SSL_CERT_FILE, SSL_CERT_DIR, npm_config_cafile), and unmounts all of them
# when CMD ends, fails or is interrupted, after stopping whatever CMD left
# running inside (SIGTERM, then SIGKILL).  One run at a time per chroot (a
# lock).
#
# Safety: a chroot holding mounts must never be removed with rm -rf (it
# would go through the bind mounts into the host's /dev and the checkout).
# idem_debian_unmount unmounts whatever is mounted under a chroot; it runs
# before a chroot is (re)built and after every run.

idem_debian_packages() {
	local major=$1
	printf '%s\n' "postgresql-$major" "postgresql-server-dev-$major" \
		make gcc libc6-dev libipc-run-perl nodejs npm ca-certificates \
		pgbouncer redis-server gnuplot-nox procps xz-utils valgrind \
		liblz4-dev libzstd-dev libkrb5-dev libicu-dev
}

# The mount points at or under ROOT (a physical path), deepest first.
idem_debian_mounts() {
	awk -v r="$1" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}

# Unmount everything mounted at or under ROOT, deepest first.
idem_debian_unmount() {
	local root mp
	root=$(cd "$1" 2>/dev/null && pwd -P) || return 0
	idem_debian_mounts "$root" | while read -r mp; do
		umount "$mp" 2>/dev/null || umount -l "$mp"
	done
	if [ -n "$(idem_debian_mounts "$root")" ]; then
		idem_die "cannot unmount what is mounted under $root"
	fi
}

# Stop whatever still runs inside ROOT (a test cluster left by an
# interrupted run): SIGTERM, then SIGKILL after 5 seconds.
idem_debian_stop_processes() {
	local root pids p i
	root=$(cd "$1" 2>/dev/null && pwd -P) || return 0
	for i in 1 2 3 4 5 6; do
		pids=()
		for p in /proc/[0-9]*; do
			if [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ]; then pids+=("${p#/proc/}"); fi
		done
		[ ${#pids[@]} -eq 0 ] && return 0
		if [ "$i" -eq 1 ]; then
			kill -TERM "${pids[@]}" 2>/dev/null || true
		elif [ "$i" -eq 6 ]; then
			kill -KILL "${pids[@]}" 2>/dev/null || true
		fi
		sleep 1
	done
	return 0
}

idem_debian_deps() {
	command -v debootstrap >/dev/null || idem_apt_install debootstrap
}

# In the empty DIR.src (idem_cached_build): SUITE MAJOR ROOT
idem_debian_steps() {
	local suite=$1 major=$2 root=$3 rc=0
	local -a pkgs
	mapfile -t pkgs < <(idem_debian_packages "$major")
	debootstrap --variant=minbase "$suite" "$root" http://deb.debian.org/debian || return 1
	printf '#!/bin/sh\n# no service starts in this chroot\nexit 101\n' >"$root/usr/sbin/policy-rc.d" \
		&& chmod 755 "$root/usr/sbin/policy-rc.d" \
		&& mkdir -p "$root/etc/postgresql-common" \
		&& echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf" \
		|| return 1
	mount -t proc proc "$root/proc" || return 1
	chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends "${pkgs[@]}" || rc=1
	umount "$root/proc" || rc=1
	[ "$rc" -eq 0 ] && chroot "$root" /usr/lib/postgresql/"$major"/bin/pg_config --version
}

idem_debian_root() {
	local suite=$1 major=$2 key dir
	idem_is_root || idem_die "a Debian $suite chroot needs root"
	key=$(idem_debian_packages "$major" | sha256sum | cut -c1-8)
	dir=${IDEM_CACHE:-/var/cache/idempotency}/debian-$suite-pg$major-$key
	IDEM_DEB_ROOT=$dir
	export IDEM_DEB_ROOT
	[ -f "$dir/.complete" ] && return 0
	if [ -d "$dir" ]; then
		idem_debian_stop_processes "$dir"
		idem_debian_unmount "$dir"
	fi
	idem_cached_build "$dir" "a Debian $suite chroot with PostgreSQL $major" \
		idem_debian_deps idem_debian_steps "$suite" "$major" "$dir"
}

idem_debian_run() {
	local root=$1 share=$2
	shift 2
	[ "$share" != / ] || idem_die "will not bind-mount / into a chroot"
	(
		exec {lockfd}>"$root.run.lock"
		flock "$lockfd"
		trap 'idem_debian_stop_processes "$root"; idem_debian_unmount "$root"' EXIT
		trap 'exit 130' INT TERM
		idem_debian_stop_processes "$root"
		idem_debian_unmount "$root"
		mkdir -p "$root/proc" "$root/dev" "$root$share"
		mount -t proc proc "$root/proc" \
			&& mount --rbind /dev "$root/dev" \
			&& mount --make-rslave "$root/dev" \
			&& mount --bind "$share" "$root$share" \
			|| idem_die "cannot mount /proc, /dev and $share in $root"
		# the host's trust store: a machine whose HTTPS goes through a
		# proxy of its own trusts that proxy's CA there (npm's registry)
		if [ -d /etc/ssl/certs ]; then
			mkdir -p "$root/etc/ssl/certs"
			mount --bind /etc/ssl/certs "$root/etc/ssl/certs" \
				&& mount -o remount,bind,ro "$root/etc/ssl/certs" \
				|| idem_die "cannot mount /etc/ssl/certs in $root"
		fi
		local -a pass=() v
		for v in CI IDEM_PG_JOBS NODE_EXTRA_CA_CERTS SSL_CERT_FILE SSL_CERT_DIR \
			npm_config_cafile; do
			if [ -n "${!v:-}" ]; then pass+=("$v=${!v}"); fi
		done
		chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
			LANG=C.UTF-8 TMPDIR=/tmp "${pass[@]}" "$@"
	)
}
