# shellcheck shell=bash disable=SC2034 # variables here are used by the scripts that source this file
# Shared helpers for cross/*.sh and packaging/*.sh. Source it; do not run it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../cross/lib.sh"
#
# Everything here reads cross/targets, the single list of build targets.

EA_CROSS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EA_ROOT="$(cd "${EA_CROSS_DIR}/.." && pwd)"
EA_TARGETS_FILE="${EA_CROSS_DIR}/targets"
EA_MODULE="github.com/edge-agent/edge-agent"
EA_MAIN_PKG="./agent/cmd/edge-agent"
EA_DIST="${DIST:-${EA_ROOT}/dist}"

ea_die() {
	printf '%s: error: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

ea_log() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
}

# ea_target_names: every target name in cross/targets, in file order.
ea_target_names() {
	[[ -r "${EA_TARGETS_FILE}" ]] || ea_die "cannot read ${EA_TARGETS_FILE}"
	awk '{ sub(/#.*/, "") } NF { print $1 }' "${EA_TARGETS_FILE}"
}

# ea_target NAME: sets T_NAME T_GOOS T_GOARCH T_GOARM T_DEBARCH T_QEMU T_ELF
# for one target, or dies naming the valid targets.
ea_target() {
	local want="$1" line
	line="$(awk -v want="${want}" '{ sub(/#.*/, "") } NF && $1 == want { print; exit }' "${EA_TARGETS_FILE}")"
	if [[ -z "${line}" ]]; then
		ea_die "unknown target '${want}' (known: $(ea_target_names | tr '\n' ' '))"
	fi
	# shellcheck disable=SC2034 # used by callers
	read -r T_NAME T_GOOS T_GOARCH T_GOARM T_DEBARCH T_QEMU T_ELF <<<"${line}"
	[[ -n "${T_ELF:-}" ]] || ea_die "malformed line for '${want}' in ${EA_TARGETS_FILE}: ${line}"
}

# ea_selected_targets: the targets named in $TARGETS (space or comma separated),
# or all of them. Dies on an unknown name.
ea_selected_targets() {
	local sel="${TARGETS:-}" t
	if [[ -z "${sel}" ]]; then
		ea_target_names
		return
	fi
	for t in ${sel//,/ }; do
		ea_target "${t}"
		printf '%s\n' "${T_NAME}"
	done
}

# ea_git: git in the repository, quiet on failure.
ea_git() {
	git -C "${EA_ROOT}" "$@" 2>/dev/null
}

# ea_stamp VAR FALLBACK GIT-ARGS...: $VAR when set, else what `git GIT-ARGS`
# prints, else FALLBACK (no git, no commit).
ea_stamp() {
	local var="$1" fallback="$2" out
	shift 2
	if [[ -n "${!var:-}" ]]; then
		printf '%s\n' "${!var}"
	elif out="$(ea_git "$@")" && [[ -n "${out}" ]]; then
		printf '%s\n' "${out}"
	else
		printf '%s\n' "${fallback}"
	fi
}

# ea_version: version stamped into the binary. $VERSION wins; then
# `git describe --tags --always --dirty`; then 0.0.0-dev.
ea_version() { ea_stamp VERSION 0.0.0-dev describe --tags --always --dirty; }

# ea_commit: short commit hash, $COMMIT wins, "unknown" without git.
ea_commit() { ea_stamp COMMIT unknown rev-parse --short HEAD; }

# ea_deb_version: a Debian-valid version that sorts later for later commits.
#   $DEB_VERSION                    -> used as is (validated)
#   tag v1.2.3 on HEAD, clean       -> 1.2.3
#   N commits after tag v1.2.3      -> 1.2.3+git<YYYYMMDDhhmmss>.<sha>
#   no tag at all                   -> 0.0.0~git<YYYYMMDDhhmmss>.<sha>
#   no commit / no git              -> 0.0.0~dev
# <YYYYMMDDhhmmss> is the committer date of HEAD in UTC, so a later commit is a
# newer package; "~" sorts before the release, so tagging v0.1.0 upgrades
# every untagged build. A dirty tree appends ".dirty" (sorts after clean).
ea_deb_version() {
	local v
	if [[ -n "${DEB_VERSION:-}" ]]; then
		v="${DEB_VERSION}"
	else
		local sha stamp tag dirty=""
		if ! sha="$(ea_git rev-parse --short HEAD)" || [[ -z "${sha}" ]]; then
			printf '0.0.0~dev\n'
			return
		fi
		stamp="$(TZ=UTC0 git -C "${EA_ROOT}" log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)"
		if [[ -n "$(ea_git status --porcelain --untracked-files=no)" ]]; then
			dirty=".dirty"
		fi
		if tag="$(ea_git describe --tags --abbrev=0 --match 'v[0-9]*')" && [[ -n "${tag}" ]]; then
			local base="${tag#v}"
			base="${base//-/\~}" # v1.0.0-rc1 -> 1.0.0~rc1 (sorts before 1.0.0)
			if [[ "$(ea_git rev-list --count "${tag}..HEAD")" == "0" ]]; then
				v="${base}"
				[[ -z "${dirty}" ]] || v="${base}+git${stamp}.${sha}${dirty}"
			else
				v="${base}+git${stamp}.${sha}${dirty}"
			fi
		else
			v="0.0.0~git${stamp}.${sha}${dirty}"
		fi
	fi
	if ! [[ "${v}" =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
		ea_die "'${v}' is not a valid Debian upstream version (digits first, then [A-Za-z0-9.+~])"
	fi
	printf '%s\n' "${v}"
}

# ea_go_env NAME: sets the array EA_GO_ENV (for `env "${EA_GO_ENV[@]}" go ...`)
# to cross-compile a static binary for target NAME.
ea_go_env() {
	ea_target "$1"
	EA_GO_ENV=(CGO_ENABLED=0 "GOOS=${T_GOOS}" "GOARCH=${T_GOARCH}")
	if [[ "${T_GOARM}" != "-" ]]; then
		EA_GO_ENV+=("GOARM=${T_GOARM}")
	fi
}

# Test-script bookkeeping shared by packaging/test-deb*.sh: counters, one
# PASS/FAIL/SKIP line per check, and timed section headers.
ea_passed=0
ea_failed=0
ea_skipped=0
pass() {
	ea_passed=$((ea_passed + 1))
	printf 'PASS %s\n' "$*"
}
fail() {
	ea_failed=$((ea_failed + 1))
	printf 'FAIL %s\n' "$*"
}
skip() {
	ea_skipped=$((ea_skipped + 1))
	printf 'SKIP %s\n' "$*"
}
# check DESCRIPTION COMMAND...: PASS when the command succeeds.
check() {
	local what="$1"
	shift
	if "$@"; then
		pass "${what}"
	else
		fail "${what}"
	fi
}
# check_logged DESCRIPTION LOG COMMAND...: like check, with the command's
# output in LOG, printed indented when it fails.
check_logged() {
	local what="$1" log="$2"
	shift 2
	if "$@" >"${log}" 2>&1; then
		pass "${what}"
	else
		sed 's/^/    /' "${log}"
		fail "${what}"
	fi
}
section() {
	printf '\n== %s (%ds)\n' "$*" "$((SECONDS - ${START:-0}))"
}

# ea_detect_mirror SUITE: the mirror apt on this machine uses for SUITE
# (deb822 .sources or one-line .list entries, with or without [options]), so
# debootstrap talks to the same host as apt and to no other.
ea_detect_mirror() {
	local suite="$1" f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -r "${f}" ]] || continue
		awk -v suite="${suite}" '
			/^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
			/^URIs:/ { uri = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
			END { if (uri != "" && ok) print uri }' "${f}"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -r "${f}" ]] || continue
		awk -v suite="${suite}" '$1 == "deb" { u = $2; s = $3; if ($2 ~ /^\[/) { for (i = 2; i <= NF; i++) if ($i ~ /\]$/) break; u = $(i + 1); s = $(i + 2) } if (s == suite) print u }' "${f}"
	done
}
