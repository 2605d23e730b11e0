#!/usr/bin/env bash
# End-to-end tests of the edge-agent .deb packages (run by `make test-deb` and CI).
#
#   bash packaging/test-deb.sh
#
#   (a) dpkg-deb metadata of every package: Package, Version, Architecture,
#       no Depends, file list with owners and modes, conffiles, scripts
#   (b) lintian: no error or warning (overrides shipped in the package)
#   (c) ELF header of each binary matches the package architecture; static;
#       GOARM recorded in the build info (armhf: 6, armel: 5 = soft-float)
#   (d) install / upgrade / remove / purge of the amd64 package in a fresh
#       debootstrap'd bookworm chroot (cached as a tarball, built once)
#   (e) systemd-analyze verify of the unit as installed in that chroot
#
# Environment:
#   TEST_CACHE   cache dir (default ${XDG_CACHE_HOME:-/var/cache}/edge-agent-test)
#   MIRROR       Debian mirror for debootstrap (default: the one apt uses here)
#   KEEP_WORK=1  keep the scratch directory for inspection
#
# Needs root (debootstrap, chroot, mounts). Installs lintian, debootstrap,
# binutils, file and systemd with apt-get when missing.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=test-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"

[[ "$(id -u)" == "0" ]] || ea_die "must run as root (debootstrap, chroot, mount)"


# --- tools ------------------------------------------------------------------
section "tools"
need=()
command -v lintian >/dev/null || need+=(lintian)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v readelf >/dev/null || need+=(binutils)
command -v file >/dev/null || need+=(file)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v xz >/dev/null || need+=(xz-utils)
if ((${#need[@]} > 0)); then
	ea_log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update || ea_log "apt-get update reported errors; trying the install anyway"
	apt-get install -y --no-install-recommends "${need[@]}"
fi
for t in lintian debootstrap readelf file dpkg-deb systemd-analyze go; do
	command -v "${t}" >/dev/null || ea_die "${t} not found after install"
done

deb_test_init test-deb amd64

# --- build ------------------------------------------------------------------
# v1: all architectures, as released. v2: amd64 only, a higher version with a
# changed default config, to exercise the upgrade path and dpkg's conffile
# handling.
section "build packages"
V1="$(ea_deb_version)"
V2="${V1}+upgrade1"
DIST1="${WORK}/dist1"
DIST2="${WORK}/dist2"
DIST="${DIST1}" bash "${EA_ROOT}/packaging/build-deb.sh"
sed 's/^log_level: info /log_level: warn /' "${EA_ROOT}/packaging/agent.yaml" >"${WORK}/agent-v2.yaml"
cmp -s "${EA_ROOT}/packaging/agent.yaml" "${WORK}/agent-v2.yaml" && ea_die "could not derive a changed default config for v2"
mkdir -p "${DIST2}"
cp "${DIST1}/edge-agent-linux-amd64" "${DIST2}/"
DIST="${DIST2}" DEB_VERSION="${V2}" AGENT_YAML="${WORK}/agent-v2.yaml" SKIP_BUILD=1 \
	bash "${EA_ROOT}/packaging/build-deb.sh" amd64
dpkg --compare-versions "${V2}" gt "${V1}" || ea_die "upgrade version ${V2} does not sort after ${V1}"

# --- (a) metadata ------------------------------------------------------------
section "(a) package metadata and contents"
# path mode owner — everything the package must ship, and nothing else.
EXPECTED_FILES="\
./etc/edge-agent/agent.yaml -rw-r--r-- root/root
./lib/systemd/system/edge-agent.service -rw-r--r-- root/root
./usr/bin/edge-agent -rwxr-xr-x root/root
./usr/lib/sysusers.d/edge-agent.conf -rw-r--r-- root/root
./usr/lib/tmpfiles.d/edge-agent.conf -rw-r--r-- root/root
./usr/share/doc/edge-agent/changelog.gz -rw-r--r-- root/root
./usr/share/doc/edge-agent/copyright -rw-r--r-- root/root
./usr/share/edge-agent/grafana/edge-agent.json -rw-r--r-- root/root
./usr/share/edge-agent/grafana/edge-fleet.json -rw-r--r-- root/root
./usr/share/edge-agent/prometheus/edge-agent.rules.yml -rw-r--r-- root/root
./usr/share/lintian/overrides/edge-agent -rw-r--r-- root/root
./usr/share/man/man8/edge-agent.8.gz -rw-r--r-- root/root"

declare -A DEB_FOR
while read -r name; do
	ea_target "${name}"
	deb="${DIST1}/edge-agent_${V1}_${T_DEBARCH}.deb"
	if [[ ! -s "${deb}" ]]; then
		fail "${T_DEBARCH}: ${deb##*/} was not built"
		continue
	fi
	DEB_FOR[${name}]="${deb}"
	check "${T_DEBARCH}: Package is edge-agent" test "$(dpkg-deb -f "${deb}" Package)" == edge-agent
	check "${T_DEBARCH}: Architecture is ${T_DEBARCH}" test "$(dpkg-deb -f "${deb}" Architecture)" == "${T_DEBARCH}"
	check "${T_DEBARCH}: Version is ${V1}" test "$(dpkg-deb -f "${deb}" Version)" == "${V1}"
	check "${T_DEBARCH}: no Depends/Pre-Depends (static binary)" test -z "$(dpkg-deb -f "${deb}" Depends Pre-Depends)"
	got="$(dpkg-deb -c "${deb}" | awk '$1 !~ /^d/ { print $6, $1, $2 }' | sort)"
	if [[ "${got}" == "${EXPECTED_FILES}" ]]; then
		pass "${T_DEBARCH}: file list, modes and owners as expected"
	else
		fail "${T_DEBARCH}: file list differs (< expected, > got):"
		diff <(printf '%s\n' "${EXPECTED_FILES}") <(printf '%s\n' "${got}") | sed 's/^/    /' || true
	fi
	ctrl="${WORK}/control-${T_DEBARCH}"
	dpkg-deb -e "${deb}" "${ctrl}"
	check "${T_DEBARCH}: conffiles is exactly /etc/edge-agent/agent.yaml" test "$(cat "${ctrl}/conffiles")" == /etc/edge-agent/agent.yaml
	for s in postinst prerm postrm; do
		check "${T_DEBARCH}: ${s} present, executable, valid sh" eval "test -x '${ctrl}/${s}' && sh -n '${ctrl}/${s}'"
	done
	if [[ "${name}" == amd64 ]]; then
		check "amd64: conffile content is packaging/agent.yaml" \
			eval "dpkg-deb --fsys-tarfile '${deb}' | tar -xO ./etc/edge-agent/agent.yaml | cmp -s - '${EA_ROOT}/packaging/agent.yaml'"
		check "amd64: unit content is systemd/edge-agent.service" \
			eval "dpkg-deb --fsys-tarfile '${deb}' | tar -xO ./lib/systemd/system/edge-agent.service | cmp -s - '${EA_ROOT}/systemd/edge-agent.service'"
		check "amd64: man page decompresses and renders without warnings" \
			eval "dpkg-deb --fsys-tarfile '${deb}' | tar -xO ./usr/share/man/man8/edge-agent.8.gz | zcat | LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z 2>&1 | { ! grep -q .; }"
	fi
done < <(ea_target_names)

# --- (b) lintian -------------------------------------------------------------
section "(b) lintian"
for name in "${!DEB_FOR[@]}"; do
	deb="${DEB_FOR[${name}]}"
	# --show-overrides lists the overridden tags (O:) with their reasons; with
	# it lintian's exit status counts them too, so the verdict comes from the
	# E:/W: lines. An exit status without any tag line is a lintian failure.
	out="$(lintian --pedantic --show-overrides --fail-on error,warning "${deb}" 2>&1)" && rc=0 || rc=$?
	out="$(printf '%s\n' "${out}" | grep -v -e 'running with root privileges is not recommended' -e '^N: ' -e '^N:$' || true)"
	[[ -z "${out}" ]] || printf '%s\n' "${out}" | sed "s/^/    ${deb##*/}: /"
	if printf '%s\n' "${out}" | grep -q '^[EW]: '; then
		fail "lintian: ${deb##*/} has errors or warnings"
	elif ((rc != 0)) && ! printf '%s\n' "${out}" | grep -q '^O: '; then
		fail "lintian: ${deb##*/} failed to run (exit ${rc})"
	else
		pass "lintian: ${deb##*/} has no error or warning (overrides listed above)"
	fi
done

# --- (c) ELF -----------------------------------------------------------------
section "(c) binaries"
# has_build_setting "$(go version -m BIN)" KEY=VALUE
has_build_setting() {
	printf '%s\n' "$1" | grep -qxF "$(printf '\tbuild\t%s' "$2")"
}
for name in "${!DEB_FOR[@]}"; do
	ea_target "${name}"
	deb="${DEB_FOR[${name}]}"
	x="${WORK}/x-${T_DEBARCH}"
	mkdir -p "${x}"
	dpkg-deb -x "${deb}" "${x}"
	bin="${x}/usr/bin/edge-agent"
	hdr="$(readelf -h "${bin}")"
	machine="$(printf '%s\n' "${hdr}" | sed -n 's/^ *Machine: *//p')"
	class="$(printf '%s\n' "${hdr}" | sed -n 's/^ *Class: *//p')"
	flags="$(printf '%s\n' "${hdr}" | sed -n 's/^ *Flags: *//p')"
	case "${T_ELF}" in
	X86-64) want_class=ELF64 want_machine='X86-64' ;;
	AArch64) want_class=ELF64 want_machine='AArch64' ;;
	ARM) want_class=ELF32 want_machine='ARM' ;;
	*) ea_die "unknown ELF machine ${T_ELF} in cross/targets" ;;
	esac
	check "${T_DEBARCH}: ELF class ${class} = ${want_class}, machine '${machine}' matches ${want_machine}" \
		eval "[[ '${class}' == '${want_class}' && '${machine}' == *'${want_machine}'* ]]"
	check "${T_DEBARCH}: statically linked (no program interpreter)" eval "! readelf -lW '${bin}' | grep -q 'Requesting program interpreter'"
	check "${T_DEBARCH}: stripped (no .symtab)" eval "! readelf -SW '${bin}' | grep -q ' .symtab '"
	binfo="$(go version -m "${bin}" 2>&1)" || binfo=""
	check "${T_DEBARCH}: build info says GOARCH=${T_GOARCH}" has_build_setting "${binfo}" "GOARCH=${T_GOARCH}"
	check "${T_DEBARCH}: build info says CGO_ENABLED=0" has_build_setting "${binfo}" CGO_ENABLED=0
	if [[ "${T_GOARM}" != "-" ]]; then
		check "${T_DEBARCH}: EABI version 5 (${flags})" eval "[[ '${flags}' == *'Version5 EABI'* ]]"
		# Go's linker writes the same e_flags for every GOARM, so the float ABI
		# is read from the build info: GOARM=5 means software floating point.
		check "${T_DEBARCH}: build info says GOARM=${T_GOARM}$([[ "${T_GOARM}" == 5 ]] && printf ' (soft-float)')" \
			has_build_setting "${binfo}" "GOARM=${T_GOARM}"
	fi
	if [[ "${name}" == amd64 ]]; then
		check "amd64: packaged binary runs: edge-agent version" "${bin}" version
	fi
done

# --- (d) install test in a bookworm chroot -----------------------------------
section "(d) install, upgrade, remove, purge in a ${SUITE} chroot"

deb_rootfs || ea_die "debootstrap failed (log above)"
ea_log "rootfs cache: ${ROOTFS_TAR} ($(du -h "${ROOTFS_TAR}" | cut -f1))"

deb_chroot
[[ ! -d "${CHROOT}/run/systemd/system" ]] || ea_die "chroot claims a running systemd; the test assumes none"
cp "${DEB_FOR[amd64]}" "${CHROOT}/tmp/v1.deb"
cp "${DIST2}/edge-agent_${V2}_amd64.deb" "${CHROOT}/tmp/v2.deb"

stat_in() { # stat_in PATH: "mode user group" inside the chroot
	in_chroot stat -c '%a %U %G' "$1" 2>/dev/null || echo missing
}
expect_stat() { # expect_stat PATH "mode user group"
	local got
	got="$(stat_in "$1")"
	if [[ "${got}" == "$2" ]]; then
		pass "chroot: $1 is $2"
	else
		fail "chroot: $1 is '${got}', want '$2'"
	fi
}

# A Raspberry Pi OS image has a gpio group; this one has no i2c group, so the
# postinst must add the user to gpio and skip i2c without failing.
in_chroot groupadd --system gpio

# install v1
check_logged "chroot: dpkg -i v1 succeeds" "${WORK}/dpkg-v1.log" in_chroot dpkg -i /tmp/v1.deb
# shellcheck disable=SC2016 # dpkg-query format, not shell
check "chroot: dpkg reports v1 installed" test "$(in_chroot dpkg-query -W -f='${Status} ${Version}' edge-agent)" == "install ok installed ${V1}"
pw="$(in_chroot getent passwd edge-agent || true)"
IFS=: read -r _ _ ea_uid ea_gid _ ea_home ea_shell <<<"${pw}"
check "chroot: system user edge-agent exists (uid ${ea_uid:-none} < 1000)" eval "[[ -n '${ea_uid:-}' ]] && ((${ea_uid:-1000} < 1000))"
check "chroot: home /var/lib/edge-agent, shell nologin" eval "[[ '${ea_home:-}' == /var/lib/edge-agent && '${ea_shell:-}' == */nologin ]]"
check "chroot: primary group edge-agent" test "$(in_chroot getent group edge-agent | cut -d: -f3)" == "${ea_gid:-x}"
groups_of="$(in_chroot id -nG edge-agent || true)"
check "chroot: edge-agent added to existing group gpio (groups: ${groups_of})" eval "[[ ' ${groups_of} ' == *' gpio '* ]]"
check "chroot: missing group i2c skipped" eval "! in_chroot getent group i2c >/dev/null"
expect_stat /usr/bin/edge-agent "755 root root"
expect_stat /var/lib/edge-agent "750 edge-agent edge-agent"
expect_stat /etc/edge-agent/agent.yaml "640 root edge-agent"
expect_stat /lib/systemd/system/edge-agent.service "644 root root"
expect_stat /usr/lib/sysusers.d/edge-agent.conf "644 root root"
expect_stat /usr/lib/tmpfiles.d/edge-agent.conf "644 root root"
check "chroot: unit enabled (multi-user.target.wants symlink)" \
	test "$(readlink "${CHROOT}/etc/systemd/system/multi-user.target.wants/edge-agent.service")" == /lib/systemd/system/edge-agent.service
check "chroot: edge-agent version" eval "in_chroot edge-agent version >'${WORK}/version-v1.txt'"
for f in prometheus/edge-agent.rules.yml grafana/edge-agent.json grafana/edge-fleet.json; do
	check "chroot: monitoring file /usr/share/edge-agent/${f} installed" test -s "${CHROOT}/usr/share/edge-agent/${f}"
done
check "chroot: edge-agent check-config on the packaged config" eval "in_chroot edge-agent check-config /etc/edge-agent/agent.yaml >'${WORK}/check.txt' 2>&1 || { sed 's/^/    /' '${WORK}/check.txt'; false; }"
check "chroot: the edge-agent user can read and validate the config" \
	eval "in_chroot setpriv --reuid=edge-agent --regid=edge-agent --init-groups edge-agent check-config /etc/edge-agent/agent.yaml >/dev/null"
printf 'site: "not a token!"\n' >"${CHROOT}/tmp/bad.yaml"
rc=0
in_chroot edge-agent check-config /tmp/bad.yaml >/dev/null 2>&1 || rc=$?
check "chroot: check-config exits 78 on a bad config (got ${rc})" test "${rc}" == 78

# (e) verify the unit as installed
check_logged "(e) systemd-analyze verify of the installed unit is clean" "${WORK}/verify.log" verify_installed_unit

# operator edits the conffile; the daemon has state
in_chroot sed -i 's/^site: store-0001$/site: store-4242/' /etc/edge-agent/agent.yaml
check "chroot: conffile edited" grep -qx 'site: store-4242' "${CHROOT}/etc/edge-agent/agent.yaml"
in_chroot setpriv --reuid=edge-agent --regid=edge-agent --init-groups sh -c 'echo keep-me >/var/lib/edge-agent/marker'

# upgrade to v2 (its default config changed too: dpkg must keep the edit)
check_logged "chroot: dpkg -i --force-confold v2 (upgrade) succeeds" "${WORK}/dpkg-v2.log" in_chroot dpkg -i --force-confold /tmp/v2.deb </dev/null
# shellcheck disable=SC2016 # dpkg-query format, not shell
check "chroot: dpkg reports v2 installed" test "$(in_chroot dpkg-query -W -f='${Version}' edge-agent)" == "${V2}"
check "chroot: edited conffile kept on upgrade" grep -qx 'site: store-4242' "${CHROOT}/etc/edge-agent/agent.yaml"
check "chroot: new default config offered as agent.yaml.dpkg-dist" grep -q '^log_level: warn ' "${CHROOT}/etc/edge-agent/agent.yaml.dpkg-dist"
check "chroot: state kept on upgrade (marker)" test "$(cat "${CHROOT}/var/lib/edge-agent/marker" 2>/dev/null)" == keep-me
expect_stat /var/lib/edge-agent "750 edge-agent edge-agent"
expect_stat /etc/edge-agent/agent.yaml "640 root edge-agent"
check "chroot: user unchanged on upgrade" test "$(in_chroot getent passwd edge-agent)" == "${pw}"
check "chroot: edited config still valid after upgrade" eval "in_chroot edge-agent check-config /etc/edge-agent/agent.yaml >/dev/null"

# remove: binary gone; config, state, user stay
check_logged "chroot: dpkg --remove succeeds" "${WORK}/dpkg-remove.log" in_chroot dpkg --remove edge-agent
check "chroot: binary removed" test ! -e "${CHROOT}/usr/bin/edge-agent"
check "chroot: unit removed" test ! -e "${CHROOT}/lib/systemd/system/edge-agent.service"
check "chroot: conffile kept after remove" test -f "${CHROOT}/etc/edge-agent/agent.yaml"
check "chroot: state kept after remove" test -f "${CHROOT}/var/lib/edge-agent/marker"

# purge: state and config gone; the system account is kept (Debian practice)
check_logged "chroot: dpkg --purge succeeds" "${WORK}/dpkg-purge.log" in_chroot dpkg --purge edge-agent
check "chroot: /var/lib/edge-agent removed on purge" test ! -e "${CHROOT}/var/lib/edge-agent"
check "chroot: /etc/edge-agent removed on purge" test ! -e "${CHROOT}/etc/edge-agent"
check "chroot: enable symlink removed on purge" test ! -L "${CHROOT}/etc/systemd/system/multi-user.target.wants/edge-agent.service"
# shellcheck disable=SC2016 # dpkg-query format, not shell
st="$(in_chroot dpkg-query -W -f='${db:Status-Abbrev}' edge-agent 2>/dev/null || true)"
check "chroot: dpkg lists the package as gone (status '${st}')" eval "[[ -z '${st// /}' || '${st}' == [up]n* ]]"
check "chroot: system user kept on purge (policy: never recycle a system uid)" eval "in_chroot getent passwd edge-agent >/dev/null"

# reinstall over the leftover account (as after a purge and a new rollout)
check_logged "chroot: reinstall after purge reuses the account" "${WORK}/dpkg-re.log" in_chroot dpkg -i /tmp/v2.deb
expect_stat /var/lib/edge-agent "750 edge-agent edge-agent"

# Fallback path: an image without systemd-sysusers/systemd-tmpfiles (e.g. a
# vendor image with another init) must still get the account via useradd.
in_chroot dpkg --purge edge-agent >/dev/null 2>&1
in_chroot userdel edge-agent
in_chroot sh -c '! getent group edge-agent >/dev/null || groupdel edge-agent'
for tool in systemd-sysusers systemd-tmpfiles; do
	p="$(in_chroot sh -c "command -v ${tool}")" || ea_die "no ${tool} in the chroot to hide"
	in_chroot dpkg-divert --quiet --local --rename --divert "${p}.hidden" --add "${p}"
done
check_logged "chroot without systemd-sysusers: dpkg -i succeeds" "${WORK}/dpkg-fallback.log" in_chroot dpkg -i /tmp/v1.deb
pw2="$(in_chroot getent passwd edge-agent || true)"
IFS=: read -r _ _ fb_uid _ _ fb_home fb_shell <<<"${pw2}"
check "fallback: useradd created system user (uid ${fb_uid:-none}, ${fb_home:-?}, ${fb_shell:-?})" \
	eval "[[ -n '${fb_uid:-}' ]] && ((${fb_uid:-1000} < 1000)) && [[ '${fb_home:-}' == /var/lib/edge-agent && '${fb_shell:-}' == */nologin ]]"
expect_stat /var/lib/edge-agent "750 edge-agent edge-agent"
expect_stat /etc/edge-agent/agent.yaml "640 root edge-agent"

section "done"
printf 'test-deb: %d passed, %d failed in %ds\n' "${ea_passed}" "${ea_failed}" "$((SECONDS - START))"
((ea_failed == 0))
