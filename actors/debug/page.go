package debug

import (
	"html/template"
	"net/http"
)

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Flotilla broker {{.Cluster.NodeID}}</title>
<meta http-equiv="refresh" content="2">
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}
td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left}
th{background:#f3f3f3}
.leader{font-weight:bold;color:#0a6}
</style></head><body>
<h1>Flotilla broker {{.Cluster.NodeID}}</h1>
<p>Cluster <code>{{if .Cluster.ClusterID}}{{.Cluster.ClusterID}}{{else}}(not yet initialised){{end}}</code>,
controller leader: {{if .Cluster.Leader}}broker {{.Cluster.Leader}}{{else}}none{{end}},
command level {{.Cluster.ClusterLevel}} (this broker's: {{.Cluster.CommandLevel}}).
JSON: <a href="/debug/raft">raft</a> · <a href="/debug/actors">actors</a> · <a href="/debug/cluster">cluster</a> · <a href="/debug/groups">groups</a> ·
<a href="/metrics">metrics</a> · <a href="/debug/pprof/">pprof</a></p>
<h2>Brokers</h2>
<table><tr><th>id</th><th>Kafka address</th><th>Raft address</th><th>registered at</th><th>command level</th><th>heard from</th></tr>
{{range .Cluster.Brokers}}<tr><td>{{.NodeID}}</td><td>{{.KafkaAddr}}</td><td>{{.RaftAddr}}</td><td>{{.RegisteredAt}}</td><td>{{.Level}}</td><td>{{if eq .NodeID $.Cluster.NodeID}}this broker{{else}}{{with index $.Cluster.Health .NodeID}}{{if .Alive}}alive{{else}}<b>dead</b>{{end}}{{if .Stopping}}, stopping{{end}}{{if ge .HeardMsAgo 0}}, {{.HeardMsAgo}} ms ago{{else}}, never{{end}}{{end}}{{end}}</td></tr>{{end}}
</table>
<h2>Membership</h2>
<table><tr><th></th><th>brokers</th></tr>
<tr><td>config peers (this broker)</td><td>{{range $id, $addr := .Cluster.ConfigPeers}}{{$id}} ({{$addr}}) {{else}}unknown{{end}}</td></tr>
<tr><td>controller voters</td><td>{{.Cluster.Membership.Voters}}</td></tr>
<tr><td>controller learners</td><td>{{.Cluster.Membership.Learners}}</td></tr>
<tr><td>removal requested</td><td>{{range .Cluster.Membership.RemovalRequests}}{{.NodeID}}: asked by {{.RequestedBy}}, not yet by {{.NotRequestedBy}}{{if .Agreed}} (agreed; starts while the voters that stay are a live majority){{end}}<br>{{else}}none{{end}}</td></tr>
<tr><td>draining</td><td>{{.Cluster.Membership.Draining}}</td></tr>
<tr><td>removed</td><td>{{.Cluster.Membership.Removed}}</td></tr>
</table>
<h2>Reassignments in progress</h2>
<table><tr><th>partition</th><th>replicas</th><th>adding</th><th>removing</th><th>leader</th><th>raft voters / learners here</th><th>progress (match, behind the leader's commit)</th></tr>
{{range .Cluster.Reassignments}}<tr><td>{{.Topic}}/{{.Partition}}</td><td>{{.Replicas}}</td><td>{{.Adding}}</td><td>{{.Removing}}</td>
<td>{{if .Leader}}broker {{.Leader}}{{else}}unknown{{end}}</td><td>{{.RaftVoters}} / {{.RaftLearners}}</td>
<td>{{if .LeadHere}}commit {{.Commit}}: {{range .Progress}}{{.NodeID}}{{if .Adding}} (adding{{if .Learner}}, learner{{end}}){{end}}: {{.Match}}, {{.Behind}} behind, {{.State}}<br>{{end}}{{else if .Leader}}see broker {{.Leader}}{{end}}</td></tr>
{{else}}<tr><td colspan="7">none</td></tr>{{end}}
</table>
<h2>Raft groups</h2>
<table><tr><th>group</th><th>role</th><th>term</th><th>leader</th><th>commit</th><th>applied</th><th>voters</th><th>followers (match/next/state)</th></tr>
{{range .Groups}}<tr><td>{{.Name}}</td><td class="{{.Role}}">{{.Role}}{{with .Halted}}: {{.}}{{end}}</td><td>{{.Term}}</td><td>{{.Leader}}</td><td>{{.Commit}}</td><td>{{.Applied}}</td><td>{{.Voters}}</td>
<td>{{range $id, $p := .Progress}}{{$id}}: {{$p.Match}}/{{$p.Next}}/{{$p.State}} {{end}}</td></tr>{{end}}
</table>
<h2>Consumer groups coordinated here</h2>
{{with .UnansweredOffsets}}<p><b>Offsets partitions {{.}} did not answer in time: their groups are not shown.</b></p>{{end}}
<table><tr><th>group</th><th>state</th><th>protocol</th><th>generation</th><th>members (assigned partitions)</th><th>lag</th></tr>
{{range .ConsumerGroups}}<tr><td>{{.Group}}</td><td>{{.State}}</td><td>{{.ProtocolType}}/{{.Protocol}}</td><td>{{.Generation}}</td>
<td>{{range .Members}}{{.ClientID}} {{.Host}} {{.Assigned}}<br>{{end}}</td><td>{{.TotalLag}}</td></tr>{{end}}
</table>
<h2>Actors</h2>
<table><tr><th>name</th><th>kind</th><th>mailbox</th><th>processed</th><th>restarts</th></tr>
{{range .Actors}}<tr><td>{{.Name}}</td><td>{{.Kind}}</td><td>{{.Mailbox}}</td><td>{{.Processed}}</td><td>{{.Restarts}}</td></tr>{{end}}
</table>
</body></html>
`))

func servePage(w http.ResponseWriter, src Sources) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	groups := groupsView(src)
	_ = page.Execute(w, map[string]any{
		"Cluster":           clusterView(src),
		"Groups":            src.Board.All(),
		"Actors":            src.Actors.List(),
		"ConsumerGroups":    groups.Groups,
		"UnansweredOffsets": groups.Unanswered,
	})
}
