#!/usr/bin/env bash
# ARM tests of the edge-agent .deb packages under qemu-user (`make test-deb-arm`).
# Best effort by design: slower than test-deb.sh and needs binfmt_misc for (2).
#
#   bash packaging/test-deb-arm.sh
#
# 1. Every ARM package's binary runs from the extracted .deb under qemu with
#    the CPU of its weakest target board (cross/qemu-* wrappers): arm64 on
#    cortex-a53-class, armhf on arm1176 (Pi Zero/1: ARMv6 + VFPv2), armel on
#    arm926 (ARMv5TE, no FPU: an instruction the board lacks would trap, which
#    proves the GOARM=5 binary is soft-float): `version` and `check-config` of
#    the packaged config.
# 2. arm64: dpkg -i, checks and purge in a debootstrap'd bookworm arm64 chroot,
#    its commands run through qemu-aarch64-static registered in binfmt_misc
#    for the duration of the test (cached rootfs, built once; slow the first
#    time). Skipped, saying why, when binfmt_misc cannot be used here.
#
# Environment:
#   TEST_CACHE      cache dir (default ${XDG_CACHE_HOME:-/var/cache}/edge-agent-test)
#   MIRROR          Debian mirror for debootstrap (default: the one apt uses here)
#   SKIP_CHROOT=1   only part 1
#   DEBOOTSTRAP_TIMEOUT  seconds for building the arm64 rootfs (default 2400)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../cross/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cross/lib.sh"

START=${SECONDS}
SUITE=bookworm
CACHE="${TEST_CACHE:-${XDG_CACHE_HOME:-/var/cache}/edge-agent-test}"
ROOTFS_TAR="${CACHE}/${SUITE}-arm64.tar"
BINFMT=/proc/sys/fs/binfmt_misc
BINFMT_NAME=edge-agent-test-aarch64

[[ "$(id -u)" == "0" ]] || ea_die "must run as root (debootstrap, chroot, binfmt_misc)"


section "tools"
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v qemu-arm-static >/dev/null || need+=(qemu-user-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]} > 0)); then
	ea_log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update || ea_log "apt-get update reported errors; trying the install anyway"
	apt-get install -y --no-install-recommends "${need[@]}"
fi

WORK="$(mktemp -d /tmp/edge-agent-test-deb-arm.XXXXXX)"
CHROOT="${WORK}/chroot"
MOUNTS=()
REGISTERED=""
cleanup() {
	local i
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || ea_log "could not unmount ${MOUNTS[i]}"
	done
	if [[ -n "${REGISTERED}" && -e "${BINFMT}/${BINFMT_NAME}" ]]; then
		echo -1 >"${BINFMT}/${BINFMT_NAME}" || ea_log "could not unregister binfmt ${BINFMT_NAME}"
	fi
	if ! findmnt -rn -o TARGET | grep -qF "${WORK}/"; then
		rm -rf "${WORK}"
	else
		ea_log "not deleting ${WORK}: something is still mounted below it"
	fi
}
trap cleanup EXIT

# --- build -------------------------------------------------------------------
section "build ARM packages"
arm_targets=()
while read -r name; do
	ea_target "${name}"
	[[ "${T_QEMU}" == "-" ]] || arm_targets+=("${name}")
done < <(ea_target_names)
V="$(ea_deb_version)"
DIST="${WORK}/dist" bash "${EA_ROOT}/packaging/build-deb.sh" "${arm_targets[@]}"

# --- 1. binaries under qemu ----------------------------------------------------
section "1. packaged binaries under qemu-user"
for name in "${arm_targets[@]}"; do
	ea_target "${name}"
	deb="${WORK}/dist/edge-agent_${V}_${T_DEBARCH}.deb"
	x="${WORK}/x-${T_DEBARCH}"
	dpkg-deb -x "${deb}" "${x}"
	run=("${EA_CROSS_DIR}/${T_QEMU}" "${x}/usr/bin/edge-agent")
	cpu="$(sed -n 's/^exec [^ ]*\( -cpu [^ ]*\)\{0,1\}.*$/\1/p' "${EA_CROSS_DIR}/${T_QEMU}")"
	if out="$("${run[@]}" version 2>&1)"; then
		pass "${T_DEBARCH} (${T_QEMU}${cpu}): edge-agent version: $(printf '%s' "${out}" | head -n1)"
	else
		printf '%s\n' "${out}" | sed 's/^/    /'
		fail "${T_DEBARCH} (${T_QEMU}${cpu}): edge-agent version"
	fi
	if out="$("${run[@]}" check-config "${x}/etc/edge-agent/agent.yaml" 2>&1)"; then
		pass "${T_DEBARCH}: check-config of the packaged config"
	else
		printf '%s\n' "${out}" | sed 's/^/    /'
		fail "${T_DEBARCH}: check-config of the packaged config"
	fi
	printf 'site: "not a token!"\n' >"${WORK}/bad.yaml"
	rc=0
	"${run[@]}" check-config "${WORK}/bad.yaml" >/dev/null 2>&1 || rc=$?
	check "${T_DEBARCH}: check-config exits 78 on a bad config (got ${rc})" test "${rc}" == 78
done

# --- 2. arm64 chroot install ----------------------------------------------------
section "2. arm64 install in a ${SUITE} arm64 chroot"
binfmt_ready() {
	if [[ ! -e "${BINFMT}/register" ]]; then
		mount -t binfmt_misc binfmt_misc "${BINFMT}" 2>/dev/null || return 1
	fi
	[[ -w "${BINFMT}/register" ]] || return 1
	if [[ "$(head -n1 "${BINFMT}/qemu-aarch64" 2>/dev/null)" == enabled ]]; then
		return 0 # already registered by the system (qemu-user-binfmt / systemd-binfmt)
	fi
	local conf=/usr/lib/binfmt.d/qemu-aarch64.conf line
	[[ -r "${conf}" ]] || return 1
	line="$(grep '^:qemu-aarch64:' "${conf}")" || return 1
	# Same magic and interpreter as Debian's qemu-user-static registration,
	# under our own name so that cleanup removes only what we added. The F
	# flag opens the (static) interpreter now, so the chroot needs no copy.
	printf '%s' ":${BINFMT_NAME}:${line#:qemu-aarch64:}" >"${BINFMT}/register" 2>/dev/null || return 1
	REGISTERED=1
}

if [[ "${SKIP_CHROOT:-0}" == "1" ]]; then
	skip "arm64 chroot install (SKIP_CHROOT=1)"
elif ! binfmt_ready; then
	skip "arm64 chroot install: binfmt_misc is not available here (cannot run arm64 programs inside a chroot)"
else
	if [[ ! -s "${ROOTFS_TAR}" ]]; then
		mirror="${MIRROR:-$(ea_detect_mirror "${SUITE}" | head -n1)}"
		[[ -n "${mirror}" ]] || ea_die "no ${SUITE} mirror found in /etc/apt/sources.list*; set MIRROR"
		ea_log "building the ${SUITE} arm64 rootfs from ${mirror} under qemu (once; cached in ${ROOTFS_TAR})"
		mkdir -p "${CACHE}"
		if timeout "${DEBOOTSTRAP_TIMEOUT:-2400}" debootstrap --variant=minbase --arch=arm64 --include=systemd \
			"${SUITE}" "${WORK}/rootfs" "${mirror}" >"${WORK}/debootstrap.log" 2>&1; then
			rm -rf "${WORK}/rootfs/var/cache/apt/archives/"*.deb
			tar -C "${WORK}/rootfs" -cf "${ROOTFS_TAR}.tmp" . && mv -f "${ROOTFS_TAR}.tmp" "${ROOTFS_TAR}"
			rm -rf "${WORK}/rootfs"
		else
			tail -n 20 "${WORK}/debootstrap.log" | sed 's/^/    /'
			fail "debootstrap of the arm64 rootfs"
		fi
	fi
	if [[ -s "${ROOTFS_TAR}" ]]; then
		mkdir -p "${CHROOT}"
		tar -C "${CHROOT}" -xf "${ROOTFS_TAR}"
		mount -t proc proc "${CHROOT}/proc" && MOUNTS+=("${CHROOT}/proc")
		mount --bind /dev "${CHROOT}/dev" && MOUNTS+=("${CHROOT}/dev")
		cp "${WORK}/dist/edge-agent_${V}_arm64.deb" "${CHROOT}/tmp/ea.deb"
		in_chroot() {
			chroot "${CHROOT}" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"
		}
		check "arm64 chroot: dpkg says the architecture is arm64" test "$(in_chroot dpkg --print-architecture)" == arm64
		in_chroot groupadd --system i2c
		if in_chroot dpkg -i /tmp/ea.deb >"${WORK}/dpkg.log" 2>&1; then
			pass "arm64 chroot: dpkg -i succeeds"
		else
			sed 's/^/    /' "${WORK}/dpkg.log"
			fail "arm64 chroot: dpkg -i failed"
		fi
		check "arm64 chroot: system user edge-agent exists" eval "in_chroot getent passwd edge-agent >/dev/null"
		check "arm64 chroot: edge-agent in group i2c" eval "in_chroot id -nG edge-agent | tr ' ' '\n' | grep -qx i2c"
		check "arm64 chroot: /var/lib/edge-agent 750 edge-agent" test "$(in_chroot stat -c '%a %U' /var/lib/edge-agent)" == "750 edge-agent"
		check "arm64 chroot: /etc/edge-agent/agent.yaml 640 root:edge-agent" test "$(in_chroot stat -c '%a %U %G' /etc/edge-agent/agent.yaml)" == "640 root edge-agent"
		check "arm64 chroot: edge-agent version" eval "in_chroot edge-agent version >/dev/null"
		check "arm64 chroot: check-config as the edge-agent user" \
			eval "in_chroot setpriv --reuid=edge-agent --regid=edge-agent --init-groups edge-agent check-config /etc/edge-agent/agent.yaml >/dev/null"
		if out="$(systemd-analyze verify --man=no --root="${CHROOT}" edge-agent.service 2>&1)" && [[ -z "${out}" ]]; then
			pass "arm64 chroot: systemd-analyze verify of the installed unit is clean"
		else
			printf '%s\n' "${out}" | sed 's/^/    /'
			fail "arm64 chroot: systemd-analyze verify of the installed unit"
		fi
		if in_chroot dpkg --purge edge-agent >"${WORK}/purge.log" 2>&1; then
			pass "arm64 chroot: dpkg --purge succeeds"
		else
			sed 's/^/    /' "${WORK}/purge.log"
			fail "arm64 chroot: dpkg --purge failed"
		fi
		check "arm64 chroot: state removed on purge" test ! -e "${CHROOT}/var/lib/edge-agent"
	fi
fi

section "done"
printf 'test-deb-arm: %d passed, %d failed, %d skipped in %ds\n' "${ea_passed}" "${ea_failed}" "${ea_skipped}" "$((SECONDS - START))"
((ea_failed == 0))
