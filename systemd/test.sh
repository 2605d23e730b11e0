#!/usr/bin/env bash
# Tests for systemd/: the unit, the sysusers.d and the tmpfiles.d snippets.
#
#   bash systemd/test.sh
#
# Environment:
#   EDGE_AGENT_BIN   binary to place at /usr/bin/edge-agent in the scratch root
#                    (default: go build ./agent/cmd/edge-agent)
#   MAX_EXPOSURE     highest accepted `systemd-analyze security` score (2.0)
#
# 1. `systemd-analyze verify` runs against a scratch root holding the unit, the
#    binary and the distribution's units (sysinit.target etc.). Any diagnostic
#    fails the test: verify exits 0 on unknown keys, so its output must be empty.
#    Mutants (misspelled key, bad value, missing binary) must each be caught,
#    which proves the check can fail.
# 2. `systemd-analyze security --offline=yes` scores the unit; above
#    MAX_EXPOSURE fails, and a mutant stripped of hardening must fail too.
# 3. The unit keeps the contract of DESIGN.md (paths, Type=notify, exit 78...).
# 4. systemd-sysusers and systemd-tmpfiles apply the snippets in a scratch root.
# Installs the systemd package with apt-get if systemd-analyze is missing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../cross/lib.sh
source "${HERE}/../cross/lib.sh" # EA_ROOT, ea_die, pass/fail bookkeeping shared with packaging/
UNIT="${HERE}/edge-agent.service"
SYSUSERS="${HERE}/edge-agent.sysusers"
TMPFILES="${HERE}/edge-agent.tmpfiles"
MAX_EXPOSURE="${MAX_EXPOSURE:-2.0}"

if ! command -v systemd-analyze >/dev/null; then
	[[ "$(id -u)" == "0" ]] || ea_die "systemd-analyze missing; run: sudo apt-get install -y systemd"
	printf 'systemd-analyze missing: installing systemd\n'
	export DEBIAN_FRONTEND=noninteractive
	apt-get update || printf 'apt-get update reported errors; trying the install anyway\n' >&2
	apt-get install -y --no-install-recommends systemd
fi
command -v systemd-analyze >/dev/null || ea_die "systemd-analyze still missing after install"
for f in "${UNIT}" "${SYSUSERS}" "${TMPFILES}"; do
	[[ -r "${f}" ]] || ea_die "missing ${f}"
done
SYSTEM_UNIT_DIR=""
for d in /usr/lib/systemd/system /lib/systemd/system; do
	if [[ -e "${d}/sysinit.target" ]]; then
		SYSTEM_UNIT_DIR="${d}"
		break
	fi
done
[[ -n "${SYSTEM_UNIT_DIR}" ]] || ea_die "no sysinit.target in /usr/lib/systemd/system: is the systemd package installed?"
printf 'systemd: %s\n' "$(systemd-analyze --version | head -n1)"

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

# --- scratch root ------------------------------------------------------------
SCRATCH="${WORK}/root"
mkdir -p "${SCRATCH}/usr/bin" "${SCRATCH}/usr/lib/systemd" "${SCRATCH}/etc/systemd/system" "${SCRATCH}/bin"
cp -a "${SYSTEM_UNIT_DIR}" "${SCRATCH}/usr/lib/systemd/system"
ln -s usr/lib "${SCRATCH}/lib"
cp /bin/kill "${SCRATCH}/bin/kill" # ExecReload=/bin/kill
if [[ -n "${EDGE_AGENT_BIN:-}" ]]; then
	[[ -x "${EDGE_AGENT_BIN}" ]] || ea_die "EDGE_AGENT_BIN=${EDGE_AGENT_BIN} is not executable"
	cp "${EDGE_AGENT_BIN}" "${SCRATCH}/usr/bin/edge-agent"
else
	[[ -d "${EA_ROOT}/agent/cmd/edge-agent" ]] || ea_die "no ${EA_ROOT}/agent/cmd/edge-agent to build; set EDGE_AGENT_BIN"
	(cd "${EA_ROOT}" && CGO_ENABLED=0 go build -trimpath -o "${SCRATCH}/usr/bin/edge-agent" ./agent/cmd/edge-agent) ||
		ea_die "go build ./agent/cmd/edge-agent failed"
fi

# verify_unit FILE: runs systemd-analyze verify on FILE installed into the
# scratch root as edge-agent.service; prints the diagnostics; returns 0 only
# when verify exits 0 and says nothing.
verify_unit() {
	local src="$1" out rc=0
	cp "${src}" "${SCRATCH}/etc/systemd/system/edge-agent.service"
	out="$(systemd-analyze verify --man=no --root="${SCRATCH}" edge-agent.service 2>&1)" || rc=$?
	[[ -z "${out}" ]] || printf '%s\n' "${out}" | sed 's/^/    verify: /'
	((rc == 0)) && [[ -z "${out}" ]]
}

# --- 1. verify ---------------------------------------------------------------
if verify_unit "${UNIT}"; then
	pass "systemd-analyze verify: edge-agent.service is clean"
else
	fail "systemd-analyze verify: edge-agent.service has diagnostics (above)"
fi

mutant="${WORK}/mutant.service"
check_mutant() {
	local what="$1"
	if verify_unit "${mutant}" >/dev/null 2>&1; then
		fail "verify missed a broken unit: ${what}"
	else
		pass "verify catches a broken unit: ${what}"
	fi
}
sed 's/^Restart=on-failure$/Restrat=on-failure/' "${UNIT}" >"${mutant}"
cmp -s "${UNIT}" "${mutant}" && ea_die "mutant 'misspelled key' did not change the unit"
check_mutant "misspelled key (Restrat=)"
sed 's/^Type=notify$/Type=notfy/' "${UNIT}" >"${mutant}"
cmp -s "${UNIT}" "${mutant}" && ea_die "mutant 'bad value' did not change the unit"
check_mutant "bad value (Type=notfy)"
sed 's|^ExecStart=/usr/bin/edge-agent |ExecStart=/usr/bin/edge-agentd |' "${UNIT}" >"${mutant}"
cmp -s "${UNIT}" "${mutant}" && ea_die "mutant 'missing binary' did not change the unit"
check_mutant "ExecStart binary missing"

# --- 2. security exposure ----------------------------------------------------
# security_score FILE: prints the overall exposure of FILE (a unit file path).
security_score() {
	local dir="${WORK}/sec" out
	rm -rf "${dir}" && mkdir -p "${dir}"
	cp "$1" "${dir}/edge-agent.service"
	out="$(cd "${dir}" && systemd-analyze security --offline=yes --no-pager ./edge-agent.service 2>&1)" || true
	printf '%s\n' "${out}" >"${WORK}/security.txt"
	printf '%s\n' "${out}" | sed -n 's/^.*Overall exposure level for edge-agent.service: \([0-9.]*\).*$/\1/p'
}
if ! systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
	printf 'SKIP systemd-analyze security --offline: not supported by this systemd (needs >= 250)\n'
else
	score="$(security_score "${UNIT}")"
	if [[ -z "${score}" ]]; then
		cat "${WORK}/security.txt"
		fail "systemd-analyze security printed no exposure level"
	else
		grep '✗' "${WORK}/security.txt" | sed 's/^/    /' || true
		printf 'exposure: edge-agent.service scores %s (max %s)\n' "${score}" "${MAX_EXPOSURE}"
		if awk -v s="${score}" -v m="${MAX_EXPOSURE}" 'BEGIN { exit !(s <= m) }'; then
			pass "systemd-analyze security: exposure ${score} <= ${MAX_EXPOSURE}"
		else
			fail "systemd-analyze security: exposure ${score} > ${MAX_EXPOSURE}"
		fi
	fi
	grep -Ev '^(NoNewPrivileges|ProtectSystem|ProtectHome|CapabilityBoundingSet|SystemCallFilter|RestrictNamespaces|PrivateTmp|MemoryDenyWriteExecute)=' "${UNIT}" >"${mutant}"
	weak="$(security_score "${mutant}")"
	if [[ -n "${weak}" ]] && awk -v s="${weak}" -v m="${MAX_EXPOSURE}" 'BEGIN { exit !(s > m) }'; then
		pass "exposure check catches a unit stripped of hardening (${weak} > ${MAX_EXPOSURE})"
	else
		fail "exposure check did not catch a unit stripped of hardening (score '${weak}')"
	fi
fi

# --- 3. contract with DESIGN.md ------------------------------------------------
expect_line() {
	if grep -qxF -- "$1" "${UNIT}"; then
		pass "unit has: $1"
	else
		fail "unit lacks the line: $1"
	fi
}
expect_line 'Type=notify'
expect_line 'NotifyAccess=main'
expect_line 'ExecStart=/usr/bin/edge-agent run --config /etc/edge-agent/agent.yaml'
# shellcheck disable=SC2016 # a literal $MAINPID
expect_line 'ExecReload=/bin/kill -HUP $MAINPID'
expect_line 'Restart=on-failure'
expect_line 'RestartPreventExitStatus=78'
expect_line 'WatchdogSec=30s'
expect_line 'User=edge-agent'
expect_line 'Group=edge-agent'
expect_line 'StateDirectory=edge-agent'
expect_line 'RuntimeDirectory=edge-agent'
expect_line 'RuntimeDirectoryMode=0750'
expect_line 'ConfigurationDirectory=edge-agent'
expect_line 'DevicePolicy=closed'
expect_line 'DeviceAllow=char-i2c rw'
expect_line 'DeviceAllow=char-gpiochip rw'
expect_line 'DeviceAllow=char-ttyUSB rw'
# 75 (EX_TEMPFAIL) is how the agent restarts onto a remote config change or
# its rollback (docs/FLEET-CONFIG.md): Restart=on-failure must act on it.
if grep -Eq '^(SuccessExitStatus|RestartPreventExitStatus)=.*\b75\b' "${UNIT}"; then
	fail "unit stops exit 75 from restarting the agent (remote config changes would not apply)"
else
	pass "exit 75 (remote config restart) is restarted by Restart=on-failure"
fi
if grep -q '^SupplementaryGroups=' "${UNIT}"; then
	fail "unit sets SupplementaryGroups= (fails with 216/GROUP where gpio/i2c do not exist)"
else
	pass "unit leaves gpio/i2c membership to the user's groups (no SupplementaryGroups=)"
fi

# --- 4. sysusers.d and tmpfiles.d ---------------------------------------------
SR="${WORK}/sysroot"
mkdir -p "${SR}/etc" "${SR}/var/lib" "${SR}/run"
if out="$(systemd-sysusers --root="${SR}" - <"${SYSUSERS}" 2>&1)"; then
	uid="$(awk -F: '$1 == "edge-agent" { print $3 }' "${SR}/etc/passwd")"
	home="$(awk -F: '$1 == "edge-agent" { print $6 }' "${SR}/etc/passwd")"
	gid="$(awk -F: '$1 == "edge-agent" { print $3 }' "${SR}/etc/group")"
	if [[ -n "${uid}" && -n "${gid}" && "${uid}" -lt 1000 && "${home}" == /var/lib/edge-agent ]]; then
		pass "sysusers creates system user edge-agent (uid ${uid}, gid ${gid}, home ${home})"
	else
		fail "sysusers result wrong: uid='${uid}' gid='${gid}' home='${home}'"
	fi
else
	printf '%s\n' "${out}"
	fail "systemd-sysusers rejected ${SYSUSERS}"
	uid="" gid=""
fi
if [[ -n "${uid}" ]]; then
	if out="$(systemd-tmpfiles --root="${SR}" --create - <"${TMPFILES}" 2>&1)"; then
		for d in /var/lib/edge-agent /run/edge-agent; do
			got="$(stat -c '%a %u %g' "${SR}${d}" 2>/dev/null || true)"
			if [[ "${got}" == "750 ${uid} ${gid}" ]]; then
				pass "tmpfiles creates ${d} 0750 edge-agent:edge-agent"
			else
				fail "tmpfiles: ${d} is '${got}', want '750 ${uid} ${gid}'"
			fi
		done
	else
		printf '%s\n' "${out}"
		fail "systemd-tmpfiles rejected ${TMPFILES}"
	fi
fi

printf 'systemd: %d passed, %d failed\n' "${ea_passed}" "${ea_failed}"
((ea_failed == 0))
