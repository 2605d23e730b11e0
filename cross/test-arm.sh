#!/usr/bin/env bash
# Run the Go tests cross-compiled for ARM under qemu-user (no ARM hardware).
#
#   bash cross/test-arm.sh                         # ./... on arm64 and armv6
#   bash cross/test-arm.sh ./buffer/... ./sensors  # some packages
#   PKGS="./buffer/..." GOTESTFLAGS="-short -count=1" ARM_TARGETS=all bash cross/test-arm.sh
#
# Environment:
#   PKGS          packages to test (default ./...); positional arguments win
#   GOTESTFLAGS   extra flags for go test, word-split (e.g. "-short -run Foo")
#   ARM_TARGETS   targets from cross/targets to run: default "arm64 armv6";
#                 "all" = every target with a qemu wrapper (adds armv5)
#
# Each target runs `go test -exec cross/<qemu-wrapper>` with CGO_ENABLED=0 and
# the target's GOARCH/GOARM; the wrappers pin the CPU model (arm1176 = Pi Zero/1
# for GOARM=6, arm926 for GOARM=5) so instructions the real boards lack trap.
# Installs qemu-user-static with apt-get when it is missing (needs root).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v go >/dev/null || ea_die "go not found in PATH"

if (($# > 0)); then
	pkgs=("$@")
else
	read -r -a pkgs <<<"${PKGS:-./...}"
fi
read -r -a testflags <<<"${GOTESTFLAGS:-}"

sel="${ARM_TARGETS:-arm64 armv6}"
if [[ "${sel}" == "all" ]]; then
	sel=""
	while read -r name; do
		ea_target "${name}"
		[[ "${T_QEMU}" == "-" ]] || sel+="${name} "
	done < <(ea_target_names)
fi

install_qemu() {
	if command -v qemu-aarch64-static >/dev/null && command -v qemu-arm-static >/dev/null; then
		return
	fi
	ea_log "qemu-user-static missing: installing it with apt-get"
	if [[ "$(id -u)" != "0" ]]; then
		ea_die "qemu-user-static is not installed and I am not root; run: sudo apt-get install -y qemu-user-static"
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update || ea_log "apt-get update reported errors; trying the install anyway"
	apt-get install -y --no-install-recommends qemu-user-static
	if ! command -v qemu-aarch64-static >/dev/null || ! command -v qemu-arm-static >/dev/null; then
		ea_die "qemu-user-static installed but qemu-aarch64-static/qemu-arm-static not in PATH"
	fi
}
install_qemu

failed=()
passed=()
for name in ${sel//,/ }; do
	ea_target "${name}"
	[[ "${T_QEMU}" != "-" ]] || ea_die "target ${name} has no qemu wrapper in ${EA_TARGETS_FILE}"
	wrapper="${EA_CROSS_DIR}/${T_QEMU}"
	[[ -x "${wrapper}" ]] || ea_die "qemu wrapper ${wrapper} missing or not executable"
	ea_go_env "${name}"
	ea_log "== ${name}: ${EA_GO_ENV[*]} go test -exec ${T_QEMU} ${testflags[*]} ${pkgs[*]}"
	start=${SECONDS}
	if (cd "${EA_ROOT}" && env "${EA_GO_ENV[@]}" go test -exec "${wrapper}" "${testflags[@]}" "${pkgs[@]}"); then
		passed+=("${name}")
		ea_log "== ${name}: PASS in $((SECONDS - start))s"
	else
		failed+=("${name}")
		ea_log "== ${name}: FAIL in $((SECONDS - start))s"
	fi
done

((${#passed[@]} + ${#failed[@]} > 0)) || ea_die "no ARM targets selected (ARM_TARGETS='${ARM_TARGETS:-}')"
ea_log "passed: ${passed[*]:-none}; failed: ${failed[*]:-none}"
((${#failed[@]} == 0)) || exit 1
