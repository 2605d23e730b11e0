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
#   KEEP_WORK=1     keep the scratch directory for inspection
#   DEBOOTSTRAP_TIMEOUT  seconds for building the arm64 rootfs (default 2400)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=test-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"

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

deb_test_init test-deb-arm arm64
REGISTERED=""
cleanup_hook() {
	if [[ -n "${REGISTERED}" && -e "${BINFMT}/${BINFMT_NAME}" ]]; then
		echo -1 >"${BINFMT}/${BINFMT_NAME}" || ea_log "could not unregister binfmt ${BINFMT_NAME}"
	fi
}

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
	# Built under qemu: slow the first time.
	if ! deb_rootfs; then
		fail "debootstrap of the arm64 rootfs"
	else
		deb_chroot
		cp "${WORK}/dist/edge-agent_${V}_arm64.deb" "${CHROOT}/tmp/ea.deb"
		check "arm64 chroot: dpkg says the architecture is arm64" test "$(in_chroot dpkg --print-architecture)" == arm64
		in_chroot groupadd --system i2c
		check_logged "arm64 chroot: dpkg -i succeeds" "${WORK}/dpkg.log" in_chroot dpkg -i /tmp/ea.deb
		check "arm64 chroot: system user edge-agent exists" eval "in_chroot getent passwd edge-agent >/dev/null"
		check "arm64 chroot: edge-agent in group i2c" eval "in_chroot id -nG edge-agent | tr ' ' '\n' | grep -qx i2c"
		check "arm64 chroot: /var/lib/edge-agent 750 edge-agent" test "$(in_chroot stat -c '%a %U' /var/lib/edge-agent)" == "750 edge-agent"
		check "arm64 chroot: /etc/edge-agent/agent.yaml 640 root:edge-agent" test "$(in_chroot stat -c '%a %U %G' /etc/edge-agent/agent.yaml)" == "640 root edge-agent"
		check "arm64 chroot: edge-agent version" eval "in_chroot edge-agent version >/dev/null"
		check "arm64 chroot: check-config as the edge-agent user" \
			eval "in_chroot setpriv --reuid=edge-agent --regid=edge-agent --init-groups edge-agent check-config /etc/edge-agent/agent.yaml >/dev/null"
		check_logged "arm64 chroot: systemd-analyze verify of the installed unit is clean" "${WORK}/verify.log" verify_installed_unit
		check_logged "arm64 chroot: dpkg --purge succeeds" "${WORK}/purge.log" in_chroot dpkg --purge edge-agent
		check "arm64 chroot: state removed on purge" test ! -e "${CHROOT}/var/lib/edge-agent"
	fi
fi

section "done"
printf 'test-deb-arm: %d passed, %d failed, %d skipped in %ds\n' "${ea_passed}" "${ea_failed}" "${ea_skipped}" "$((SECONDS - START))"
((ea_failed == 0))
