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

// A plain upstream (the LLM servers) is "<name>", or "<name>_without_<server>" while the drain file
// names one of its servers (the vllm role writes it before that server's container goes down, and
// removes it once the new one answers). No drain file: the whole upstream. No reload either way.
function pool(r) {
    var name = r.variables.llmstack_pool;
    var path = r.variables.llmstack_drain_file;
    var server = '';
    try {
        server = fs.readFileSync(path, 'utf8').trim();
    } catch (e) {
        if (e.code !== 'ENOENT') {
            r.warn('llmstack: cannot read ' + path + ': ' + e.message);
        }
    }
    return server ? name + '_without_' + server.replace(/[^0-9A-Za-z]/g, '_') : name;
}

export default { upstream, pool };
