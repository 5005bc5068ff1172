// The 401 for a missing or wrong API key, answered in the content phase: by then limit_req (preaccess) has
// counted the failure against the client's address, which a `return` in the rewrite phase would skip.
// A route that takes its key from a header of its own (auth: header) set $llmstack_key_header to its name.
function unauthorized(r) {
    var header = r.variables.llmstack_key_header;
    r.headersOut['Content-Type'] = 'application/json';
    r.headersOut['WWW-Authenticate'] = header ? 'ApiKey header="' + header + '"' : 'Bearer';
    r.return(401, '{"error":{"message":"missing or invalid API key","type":"invalid_request_error","code":"invalid_api_key"}}');
}

export default { unauthorized };
