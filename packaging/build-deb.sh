#!/usr/bin/env bash
# Build the edge-agent .deb packages with nfpm into dist/:
#   dist/edge-agent_<version>_<debarch>.deb  for every target in cross/targets
#   (amd64 -> amd64, arm64 -> arm64, armv6 -> armhf, armv5 -> armel).
#
#   bash packaging/build-deb.sh                  # all targets
#   bash packaging/build-deb.sh amd64 arm64      # some targets (cross/targets names)
#
# Environment:
#   TARGETS       targets, as for cross/build.sh (positional arguments win)
#   DIST          output directory (default dist/)
#   DEB_VERSION   package version (default: derived from git, see cross/lib.sh)
#   VERSION       version stamped into the binary (default: git describe)
#   SKIP_BUILD=1  package the binaries already in $DIST instead of rebuilding
#   NFPM          nfpm binary to use (default: go install nfpm v2.45.0 into a cache)
#   AGENT_YAML    default config to ship (default packaging/agent.yaml; tests
#                 use it to build an upgrade whose conffile changed)
#
# The armhf package carries the GOARM=6 binary: Raspberry Pi OS armhf is ARMv6
# and Debian armhf (ARMv7) runs ARMv6 code, so one binary serves both.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../cross/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cross/lib.sh"

NFPM_MODULE="github.com/goreleaser/nfpm/v2/cmd/nfpm"
NFPM_VERSION="v2.45.0"
CACHE_DIR="${XDG_CACHE_HOME:-${HOME}/.cache}/edge-agent-build"

if (($# > 0)); then
	export TARGETS="$*"
fi
mapfile -t targets < <(ea_selected_targets)
((${#targets[@]} > 0)) || ea_die "no targets selected"

# nfpm: installed with `go install pkg@version` from outside the module, so it
# never touches the project's go.mod; cached per version.
ensure_nfpm() {
	if [[ -n "${NFPM:-}" ]]; then
		[[ -x "${NFPM}" ]] || ea_die "NFPM=${NFPM} is not executable"
		return
	fi
	local bindir="${CACHE_DIR}/nfpm-${NFPM_VERSION}"
	NFPM="${bindir}/nfpm"
	if [[ -x "${NFPM}" ]]; then
		return
	fi
	ea_log "installing nfpm ${NFPM_VERSION} into ${bindir}"
	mkdir -p "${bindir}"
	(cd "$(mktemp -d)" && GOFLAGS=-mod=mod GOBIN="${bindir}" timeout 600 go install "${NFPM_MODULE}@${NFPM_VERSION}") ||
		ea_die "could not install nfpm ${NFPM_VERSION} (go install ${NFPM_MODULE}@${NFPM_VERSION})"
	[[ -x "${NFPM}" ]] || ea_die "nfpm not found at ${NFPM} after go install"
}

command -v go >/dev/null || ea_die "go not found in PATH"
command -v gzip >/dev/null || ea_die "gzip not found in PATH"
ensure_nfpm

deb_version="$(ea_deb_version)"
commit="$(ea_commit)"
if epoch="$(ea_git log -1 --format=%ct HEAD)" && [[ -n "${epoch}" ]]; then
	export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-${epoch}}"
else
	export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(date +%s)}"
fi
ea_log "package version ${deb_version} (commit ${commit})"

if [[ "${SKIP_BUILD:-0}" != "1" ]]; then
	TARGETS="${targets[*]}" bash "${EA_CROSS_DIR}/build.sh"
fi

stage="$(mktemp -d)"
trap 'rm -rf "${stage}"' EXIT

# Debian changelog (native package: changelog.gz), one entry for this build.
changelog_date="$(LC_ALL=C date -u -R -d "@${SOURCE_DATE_EPOCH}")"
subject="$(ea_git log -1 --format=%s HEAD || true)"
{
	printf 'edge-agent (%s) stable; urgency=medium\n\n' "${deb_version}"
	printf '  * Build of commit %s (%s).\n' "${commit}" "$(ea_version)"
	if [[ -n "${subject}" ]]; then
		printf '%s\n' "Last change: ${subject}" | fold -s -w 72 | sed 's/^/    /; s/ *$//'
	fi
	printf '\n -- edge-agent maintainers <edge-agent@example.com>  %s\n' "${changelog_date}"
} | gzip -9n >"${stage}/changelog.gz"
gzip -9n <"${EA_ROOT}/packaging/edge-agent.8" >"${stage}/edge-agent.8.gz"

conf="${AGENT_YAML:-${EA_ROOT}/packaging/agent.yaml}"
[[ -r "${conf}" ]] || ea_die "cannot read default config ${conf}"
conf="$(realpath "${conf}")"

mkdir -p "${EA_DIST}"
built=()
for name in "${targets[@]}"; do
	ea_target "${name}"
	bin="${EA_DIST}/edge-agent-linux-${name}"
	[[ -x "${bin}" ]] || ea_die "missing binary ${bin} (run cross/build.sh ${name}, or unset SKIP_BUILD)"
	out="${EA_DIST}/edge-agent_${deb_version}_${T_DEBARCH}.deb"
	rm -f "${out}"
	(cd "${EA_ROOT}" && DEB_ARCH="${T_DEBARCH}" DEB_VERSION="${deb_version}" EA_BIN="${bin}" EA_STAGE="${stage}" EA_CONF="${conf}" \
		"${NFPM}" package --config packaging/nfpm.yaml --packager deb --target "${out}" >/dev/null) ||
		ea_die "nfpm failed for ${name} (${T_DEBARCH})"
	[[ -s "${out}" ]] || ea_die "nfpm produced no ${out}"
	built+=("${out}")
	printf '%-6s %-6s %10d bytes  %s\n' "${name}" "${T_DEBARCH}" "$(stat -c %s "${out}")" "${out#"${EA_ROOT}/"}"
done

printf '%s\n' "${built[@]}" >"${EA_DIST}/debs.txt"
