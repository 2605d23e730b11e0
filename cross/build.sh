#!/usr/bin/env bash
# Cross-compile edge-agent for every target in cross/targets (or those named in
# $TARGETS / on the command line) into dist/edge-agent-linux-<name>.
#
#   bash cross/build.sh                 # all targets
#   bash cross/build.sh arm64 armv6     # some targets
#   TARGETS=amd64 DIST=/tmp/out VERSION=1.2.3 bash cross/build.sh
#
# Static (CGO_ENABLED=0), -trimpath, stripped (-s -w), with Version and Commit
# stamped. Prints each binary's size; warns when arm64 exceeds 20 MB.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ARM64_WARN_BYTES=$((20 * 1000 * 1000))

command -v go >/dev/null || ea_die "go not found in PATH"
[[ -d "${EA_ROOT}/${EA_MAIN_PKG#./}" ]] || ea_die "main package ${EA_MAIN_PKG} not found under ${EA_ROOT}"

if (($# > 0)); then
	export TARGETS="$*"
fi
mapfile -t targets < <(ea_selected_targets)
((${#targets[@]} > 0)) || ea_die "no targets selected"

version="$(ea_version)"
commit="$(ea_commit)"
# The commit's date: a device clock before it is certainly wrong (agent.ClockFloor).
build_date="$(git -C "${EA_ROOT}" log -1 --format=%cI 2>/dev/null || true)"
ldflags="-s -w -X ${EA_MODULE}/agent.Version=${version} -X ${EA_MODULE}/agent.Commit=${commit} -X ${EA_MODULE}/agent.BuildDate=${build_date}"

mkdir -p "${EA_DIST}"
ea_log "version ${version} commit ${commit} -> ${EA_DIST}"

warned=0
for name in "${targets[@]}"; do
	ea_go_env "${name}"
	out="${EA_DIST}/edge-agent-linux-${name}"
	ea_log "building ${name} (${EA_GO_ENV[*]})"
	(cd "${EA_ROOT}" && env "${EA_GO_ENV[@]}" go build -trimpath -ldflags "${ldflags}" -o "${out}.tmp" "${EA_MAIN_PKG}") ||
		ea_die "go build failed for target ${name}"
	mv -f "${out}.tmp" "${out}"
	size="$(stat -c %s "${out}")"
	printf '%-8s %10d bytes  %6.1f MB  %s\n' "${name}" "${size}" "$(awk -v s="${size}" 'BEGIN { printf "%.1f", s / 1000000 }')" "${out#"${EA_ROOT}/"}"
	if [[ "${name}" == "arm64" ]] && ((size > ARM64_WARN_BYTES)); then
		printf 'WARNING: arm64 binary is %d bytes, over the 20 MB budget\n' "${size}" >&2
		warned=1
	fi
done

if ((warned)) && [[ "${STRICT_SIZE:-0}" == "1" ]]; then
	ea_die "size budget exceeded and STRICT_SIZE=1"
fi
