# shellcheck shell=bash
# Shared by packaging/test-deb.sh and packaging/test-deb-arm.sh: the scratch
# directory and its mounts, the cached Debian rootfs, and the chroot unpacked
# from it. Source it; do not run it. It sources cross/lib.sh.

# shellcheck source-path=SCRIPTDIR source=../cross/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cross/lib.sh"

START=${SECONDS}
SUITE=bookworm
CACHE="${TEST_CACHE:-${XDG_CACHE_HOME:-/var/cache}/edge-agent-test}"
MOUNTS=()

# deb_test_init NAME ARCH: the scratch directory WORK (with CHROOT below it)
# and the rootfs cache ROOTFS_TAR of ARCH. At exit the mounts are undone and
# WORK is removed, unless KEEP_WORK=1 or something is still mounted below it;
# a cleanup_hook the script defines runs after the unmounts.
deb_test_init() {
	WORK="$(mktemp -d "/tmp/edge-agent-$1.XXXXXX")"
	CHROOT="${WORK}/chroot"
	ROOTFS_TAR="${CACHE}/${SUITE}-$2.tar"
	DEB_TEST_ARCH="$2"
	trap deb_test_cleanup EXIT
}

deb_test_cleanup() {
	local i
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || ea_log "could not unmount ${MOUNTS[i]}"
	done
	if declare -F cleanup_hook >/dev/null; then
		cleanup_hook
	fi
	if [[ "${KEEP_WORK:-0}" == "1" ]]; then
		ea_log "kept ${WORK}"
	elif ! findmnt -rn -o TARGET | grep -qF "${WORK}/"; then
		rm -rf "${WORK}"
	else
		ea_log "not deleting ${WORK}: something is still mounted below it"
	fi
}

# deb_rootfs: builds ROOTFS_TAR with debootstrap unless it is cached, from
# $MIRROR or the mirror apt uses here. systemd and init-system-helpers are
# included because a gateway image has them, so the package's
# systemd-sysusers, systemd-tmpfiles and deb-systemd-helper paths run as on a
# device (systemd is installed, not running). Returns 1, with the end of
# debootstrap's log, when it fails or outlasts DEBOOTSTRAP_TIMEOUT seconds.
deb_rootfs() {
	[[ ! -s "${ROOTFS_TAR}" ]] || return 0
	local mirror="${MIRROR:-}" tmp="${WORK}/rootfs-build"
	[[ -n "${mirror}" ]] || mirror="$(ea_detect_mirror "${SUITE}" | head -n1)"
	[[ -n "${mirror}" ]] || ea_die "no ${SUITE} mirror found in /etc/apt/sources.list*; set MIRROR"
	ea_log "building the ${SUITE} ${DEB_TEST_ARCH} rootfs from ${mirror} (once; cached in ${ROOTFS_TAR})"
	mkdir -p "${CACHE}"
	if ! timeout "${DEBOOTSTRAP_TIMEOUT:-2400}" debootstrap --variant=minbase --arch="${DEB_TEST_ARCH}" --include=systemd \
		"${SUITE}" "${tmp}" "${mirror}" >"${WORK}/debootstrap.log" 2>&1; then
		tail -n 30 "${WORK}/debootstrap.log" | sed 's/^/    /'
		return 1
	fi
	rm -rf "${tmp}/var/cache/apt/archives/"*.deb "${tmp}/var/lib/apt/lists/"*_Packages
	# Callers test this function's status, which turns set -e off inside
	# it: a failed tar must not leave a partial rootfs cached for good.
	tar -C "${tmp}" -cf "${ROOTFS_TAR}.tmp" . && mv -f "${ROOTFS_TAR}.tmp" "${ROOTFS_TAR}" || {
		rm -f "${ROOTFS_TAR}.tmp"
		return 1
	}
	rm -rf "${tmp}"
}

# deb_chroot: CHROOT unpacked from ROOTFS_TAR, with /proc and /dev mounted.
deb_chroot() {
	mkdir -p "${CHROOT}"
	tar -C "${CHROOT}" -xf "${ROOTFS_TAR}"
	mount -t proc proc "${CHROOT}/proc" && MOUNTS+=("${CHROOT}/proc")
	mount --bind /dev "${CHROOT}/dev" && MOUNTS+=("${CHROOT}/dev")
}

# in_chroot COMMAND...: COMMAND inside CHROOT with a clean environment.
in_chroot() {
	chroot "${CHROOT}" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"
}

# verify_installed_unit: systemd-analyze verify of edge-agent.service as the
# package installed it in CHROOT. Any output fails: verify exits 0 on
# unknown keys.
verify_installed_unit() {
	local out rc=0
	out="$(systemd-analyze verify --man=no --root="${CHROOT}" edge-agent.service 2>&1)" || rc=$?
	printf '%s\n' "${out}"
	[[ "${rc}" == 0 && -z "${out}" ]]
}
