package uplink

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// jsAPI classifies every JetStream API subject nats-server defines: read
// (a hub client may call it through $JS.<site>.API without
// uplink.allow_remote_admin) or not. The constants are referenced, so an
// upgrade that renames one does not compile, and
// TestRemoteAdminDeniesEveryWriteAPI fails on one added and not classified.
var jsAPI = map[string]struct {
	subject string
	read    bool
}{
	"JSApiAccountInfo":             {server.JSApiAccountInfo, true},
	"JSApiStreamCreate":            {server.JSApiStreamCreate, false},
	"JSApiStreamCreateT":           {server.JSApiStreamCreateT, false},
	"JSApiStreamUpdate":            {server.JSApiStreamUpdate, false},
	"JSApiStreamUpdateT":           {server.JSApiStreamUpdateT, false},
	"JSApiStreams":                 {server.JSApiStreams, true},
	"JSApiStreamList":              {server.JSApiStreamList, true},
	"JSApiStreamInfo":              {server.JSApiStreamInfo, true},
	"JSApiStreamInfoT":             {server.JSApiStreamInfoT, true},
	"JSApiStreamDelete":            {server.JSApiStreamDelete, false},
	"JSApiStreamDeleteT":           {server.JSApiStreamDeleteT, false},
	"JSApiStreamPurge":             {server.JSApiStreamPurge, false},
	"JSApiStreamPurgeT":            {server.JSApiStreamPurgeT, false},
	"JSApiStreamSnapshot":          {server.JSApiStreamSnapshot, false},
	"JSApiStreamSnapshotT":         {server.JSApiStreamSnapshotT, false},
	"JSApiStreamRestore":           {server.JSApiStreamRestore, false},
	"JSApiStreamRestoreT":          {server.JSApiStreamRestoreT, false},
	"JSApiMsgDelete":               {server.JSApiMsgDelete, false},
	"JSApiMsgDeleteT":              {server.JSApiMsgDeleteT, false},
	"JSApiMsgGet":                  {server.JSApiMsgGet, true},
	"JSApiMsgGetT":                 {server.JSApiMsgGetT, true},
	"JSDirectMsgGet":               {server.JSDirectMsgGet, true},
	"JSDirectMsgGetT":              {server.JSDirectMsgGetT, true},
	"JSDirectGetLastBySubject":     {server.JSDirectGetLastBySubject, true},
	"JSDirectGetLastBySubjectT":    {server.JSDirectGetLastBySubjectT, true},
	"JSApiConsumerCreate":          {server.JSApiConsumerCreate, true},
	"JSApiConsumerCreateT":         {server.JSApiConsumerCreateT, true},
	"JSApiConsumerCreateEx":        {server.JSApiConsumerCreateEx, true},
	"JSApiConsumerCreateExT":       {server.JSApiConsumerCreateExT, true},
	"JSApiDurableCreate":           {server.JSApiDurableCreate, false},
	"JSApiDurableCreateT":          {server.JSApiDurableCreateT, false},
	"JSApiConsumers":               {server.JSApiConsumers, true},
	"JSApiConsumersT":              {server.JSApiConsumersT, true},
	"JSApiConsumerList":            {server.JSApiConsumerList, true},
	"JSApiConsumerListT":           {server.JSApiConsumerListT, true},
	"JSApiConsumerInfo":            {server.JSApiConsumerInfo, true},
	"JSApiConsumerInfoT":           {server.JSApiConsumerInfoT, true},
	"JSApiConsumerDelete":          {server.JSApiConsumerDelete, false},
	"JSApiConsumerDeleteT":         {server.JSApiConsumerDeleteT, false},
	"JSApiConsumerPause":           {server.JSApiConsumerPause, false},
	"JSApiConsumerPauseT":          {server.JSApiConsumerPauseT, false},
	"JSApiRequestNextT":            {server.JSApiRequestNextT, false},
	"JSApiConsumerResetT":          {server.JSApiConsumerResetT, false},
	"JSApiConsumerUnpin":           {server.JSApiConsumerUnpin, false},
	"JSApiConsumerUnpinT":          {server.JSApiConsumerUnpinT, false},
	"JSApiStreamRemovePeer":        {server.JSApiStreamRemovePeer, false},
	"JSApiStreamRemovePeerT":       {server.JSApiStreamRemovePeerT, false},
	"JSApiStreamEvacuatePeer":      {server.JSApiStreamEvacuatePeer, false},
	"JSApiStreamEvacuatePeerT":     {server.JSApiStreamEvacuatePeerT, false},
	"JSApiStreamCancelMove":        {server.JSApiStreamCancelMove, false},
	"JSApiStreamCancelMoveT":       {server.JSApiStreamCancelMoveT, false},
	"JSApiStreamLeaderStepDown":    {server.JSApiStreamLeaderStepDown, false},
	"JSApiStreamLeaderStepDownT":   {server.JSApiStreamLeaderStepDownT, false},
	"JSApiConsumerLeaderStepDown":  {server.JSApiConsumerLeaderStepDown, false},
	"JSApiConsumerLeaderStepDownT": {server.JSApiConsumerLeaderStepDownT, false},
	"JSApiConsumerRemovePeer":      {server.JSApiConsumerRemovePeer, false},
	"JSApiConsumerRemovePeerT":     {server.JSApiConsumerRemovePeerT, false},
	"JSApiConsumerEvacuatePeer":    {server.JSApiConsumerEvacuatePeer, false},
	"JSApiConsumerEvacuatePeerT":   {server.JSApiConsumerEvacuatePeerT, false},
	"JSApiLeaderStepDown":          {server.JSApiLeaderStepDown, false},
	"JSApiRemoveServer":            {server.JSApiRemoveServer, false},
	"JSApiEvacuateServer":          {server.JSApiEvacuateServer, false},
	"JSApiMetaRescue":              {server.JSApiMetaRescue, false},
	"JSApiAccountPurge":            {server.JSApiAccountPurge, false},
	"JSApiAccountPurgeT":           {server.JSApiAccountPurgeT, false},
	"JSApiServerStreamMove":        {server.JSApiServerStreamMove, false},
	"JSApiServerStreamMoveT":       {server.JSApiServerStreamMoveT, false},
	"JSApiServerStreamCancelMove":  {server.JSApiServerStreamCancelMove, false},
	"JSApiServerStreamCancelMoveT": {server.JSApiServerStreamCancelMoveT, false},
}

var jsAPIConstRE = regexp.MustCompile(`(?m)^\s*(JS\w+)\s*=\s*"(\$JS\.API\.[^"]*)"`)

// Every API subject of the nats-server in go.mod is either a read, which
// the hub may call in the site's domain, or denied to it: the deny list is
// the allow list's exact complement. The sources are scanned so a new API
// call in an upgrade fails here until it is classified.
func TestRemoteAdminDeniesEveryWriteAPI(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/nats-io/nats-server/v2").Output()
	if err != nil {
		t.Fatalf("go list nats-server: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "server", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("nats-server sources: %v (%d files)", err, len(files))
	}
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range jsAPIConstRE.FindAllStringSubmatch(string(src), -1) {
			found++
			c, ok := jsAPI[m[1]]
			if !ok {
				t.Errorf("%s: server.%s = %q is not classified: add it to jsAPI (read, or denied through remoteAdminAPI)", filepath.Base(f), m[1], m[2])
			} else if c.subject != m[2] {
				t.Errorf("server.%s is %q in the sources but %q in jsAPI", m[1], m[2], c.subject)
			}
		}
	}
	if found != len(jsAPI) {
		t.Errorf("found %d API constants in the sources, jsAPI classifies %d", found, len(jsAPI))
	}
	denies := RemoteAdminDenies("store-1")
	for name, c := range jsAPI {
		subj := "$JS.store-1.API." + sampleSubject(strings.TrimPrefix(c.subject, "$JS.API."))
		denied := slices.ContainsFunc(denies, func(d string) bool { return server.SubjectMatchesFilter(subj, d) })
		if denied == c.read {
			t.Errorf("%s (%s): denied=%v, want read=%v", name, subj, denied, c.read)
		}
	}
}

// sampleSubject turns an API subject or format into one literal request
// subject: every wildcard or verb a stream or consumer name.
func sampleSubject(s string) string {
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		switch tok {
		case "*", "%s":
			toks[i] = "X"
		case ">":
			toks[i] = "X.Y"
		}
	}
	return strings.Join(toks, ".")
}

// Protect keeps a remote's own deny lists and adds the boundary once,
// however often it is applied; allow_remote_admin drops only the API
// denies.
func TestProtect(t *testing.T) {
	r := &server.RemoteLeafOpts{DenyImports: []string{"mine.>"}, DenyExports: []string{"telemetry.>"}}
	Protect(r, "s1", false)
	Protect(r, "s1", false)
	for _, want := range []string{"mine.>", "telemetry.>", "alerts.>", "edge-agent.>", "cmd.>", "$JS.API.>", "$KV.>", "$O.>", "$JS.s1.API.STREAM.PURGE.>"} {
		if n := countOf(r.DenyImports, want); n != 1 {
			t.Errorf("deny_imports has %q %d times: %v", want, n, r.DenyImports)
		}
	}
	for _, want := range []string{"telemetry.>", "alerts.>", "edge-agent.>", "$JS.EVENT.>", LocalInboxPrefix + ".>"} {
		if n := countOf(r.DenyExports, want); n != 1 {
			t.Errorf("deny_exports has %q %d times: %v", want, n, r.DenyExports)
		}
	}
	admin := &server.RemoteLeafOpts{}
	Protect(admin, "s1", true)
	if slices.ContainsFunc(admin.DenyImports, func(s string) bool { return strings.HasPrefix(s, "$JS.s1.API.") }) {
		t.Errorf("allow_remote_admin still denies the site's API: %v", admin.DenyImports)
	}
	if !slices.Contains(admin.DenyImports, "telemetry.>") {
		t.Errorf("allow_remote_admin opened the local streams to hub writes: %v", admin.DenyImports)
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}
