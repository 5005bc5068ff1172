// Pick the live upstream per request from the switch file container_rollout writes
// ("<service>_<slot>"), so a blue/green switch needs no nginx reload and no client
// connection is closed. If the file can't be read, keep the last value seen.
var fs = require('fs');
var last = {};

function upstream(r) {
    var path = r.variables.llmstack_switch_file;
    try {
        last[path] = fs.readFileSync(path, 'utf8').trim();
    } catch (e) {
        r.warn('llmstack: cannot read ' + path + ': ' + e.message);
    }
    return last[path] || 'llmstack_unavailable';
}

export default { upstream };
