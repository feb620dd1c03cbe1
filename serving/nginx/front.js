// The two things the nginx front (serving/nginx/nginx.conf) cannot do with plain directives:
//
//  * check the inference key against the keys of a mounted Secret, re-read on every request so
//    that a rotated Secret takes effect without a reload (njs keeps no state between requests);
//  * give a workflow reply its real status and type: TorchServe answers every /wfpredict request
//    200 application/json, whether the bytes are a PNG, a JPEG or a node's JSON error.
//
// njs 0.7 (Debian bookworm's libnginx-mod-http-js): ES5 plus let/const, arrow functions, async.

var fs = require('fs');
var crypto = require('crypto');

// Shorter keys are never accepted (a typo in the Secret must not open the API with "x").
var MIN_KEY_LENGTH = 16;
// A node's JSON error is small; anything longer that starts with '{' is not one.
var MAX_ERROR_BODY = 65536;
var PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
var JPEG = [0xff, 0xd8, 0xff];

function errorBody(code, type, message) {
    return JSON.stringify({code: code, type: type, message: message});
}

// Every key in the directory: one per regular file (a Secret's data keys; Kubernetes adds hidden
// "..data" links, skipped), blank and too-short ones left out. Returns [keys, short file names].
function readKeys(dir) {
    var names;
    try {
        names = fs.readdirSync(dir);
    } catch (e) {
        return [[], []];
    }
    var keys = [];
    var short = [];
    names.sort();
    for (var i = 0; i < names.length; i++) {
        if (names[i].charAt(0) === '.') {
            continue;
        }
        var text;
        try {
            text = fs.readFileSync(dir + '/' + names[i], 'utf8');
        } catch (e) {
            continue;  // a directory, or gone between the listing and the read
        }
        var key = text.trim();
        if (key.length >= MIN_KEY_LENGTH) {
            keys.push(key);
        } else if (key.length > 0) {
            short.push(names[i]);
        }
    }
    return [keys, short];
}

function digest(text) {
    return crypto.createHash('sha256').update(text).digest('hex');
}

// js_set $inference_key_ok: "1" when the request carries "Authorization: Bearer <an accepted key>".
// Every key is compared, over digests of equal length, without an early exit: the time taken
// says nothing about which key matched or how much of one did.
function keyOk(r) {
    var header = r.headersIn.Authorization || '';
    var space = header.indexOf(' ');
    if (space < 0 || header.slice(0, space).toLowerCase() !== 'bearer') {
        return '0';
    }
    var given = header.slice(space + 1).trim();
    if (!given) {
        return '0';
    }
    var keys = readKeys(r.variables.inference_keys_dir)[0];
    var mine = digest(given);
    var hit = 0;
    for (var i = 0; i < keys.length; i++) {
        var other = digest(keys[i]);
        var diff = 0;
        for (var j = 0; j < mine.length; j++) {
            diff |= mine.charCodeAt(j) ^ other.charCodeAt(j);
        }
        hit |= (diff === 0) ? 1 : 0;
    }
    return hit ? '1' : '0';
}

// js_set $inference_keys_usable for /ping (the readiness probe): "0" when the Secret holds no
// key that can be accepted, so a pod without one takes no traffic, and the log says why.
function keysUsable(r) {
    var found = readKeys(r.variables.inference_keys_dir);
    if (found[1].length) {
        r.warn('inference keys shorter than ' + MIN_KEY_LENGTH + ' characters are never accepted: '
               + found[1].join(', ') + ' in ' + r.variables.inference_keys_dir);
    }
    if (!found[0].length) {
        r.error('no usable inference key in ' + r.variables.inference_keys_dir + ': every request is refused');
        return '0';
    }
    return '1';
}

function startsWith(body, magic) {
    if (!body || body.length < magic.length) {
        return false;
    }
    for (var i = 0; i < magic.length; i++) {
        if (body[i] !== magic[i]) {
            return false;
        }
    }
    return true;
}

// The status a node's JSON error carries, or 0 when the body is not one.
function errorCode(body) {
    if (!body || body.length > MAX_ERROR_BODY || body[0] !== 0x7b) {  // '{'
        return 0;
    }
    try {
        var data = JSON.parse(body.toString());
        if (data && typeof data.code === 'number' && data.code >= 400 && data.code <= 599
            && data.code === Math.floor(data.code) && data.type !== undefined && data.message !== undefined) {
            return data.code;
        }
    } catch (e) {
        return 0;
    }
    return 0;
}

function answer(r, status, type, body) {
    r.headersOut['Content-Type'] = type;
    r.return(status, body);
}

// js_content of /wfpredict/: the whole reply is read (bounded by subrequest_output_buffer_size
// and the per-pod limit on workflow requests in flight), then answered with its real status.
async function workflow(r) {
    var args = r.variables.args;
    var reply = await r.subrequest('/_torchserve' + r.uri, {method: r.method, args: args || ''});
    r.variables.workflow_upstream_time = reply.variables.upstream_response_time || '';
    var body = reply.responseBuffer;
    var id = reply.headersOut['x-request-id'];
    if (id) {
        r.headersOut['X-Request-Id'] = id;
    }
    if (reply.status === 200) {
        if (startsWith(body, PNG)) {
            return answer(r, 200, 'image/png', body);
        }
        if (startsWith(body, JPEG)) {
            return answer(r, 200, 'image/jpeg', body);
        }
        var code = errorCode(body);
        if (code) {
            return answer(r, code, 'application/json', body);
        }
        r.error('workflow reply is neither an image nor a JSON error (' + (body ? body.length : 0) + ' bytes)');
        return answer(r, 502, 'application/json', errorBody(502, 'BadWorkflowReply',
            'the workflow answered something that is neither an image nor an error; retry, or report it'));
    }
    var upstreamType = reply.headersOut['Content-Type'] || '';
    if (upstreamType.indexOf('application/json') === 0 && body && body.length) {
        // TorchServe's own error (404, 503 when its queue is full, 500, ...), or the front's when
        // TorchServe is unreachable (add_header does not reach a subrequest's reply): a 503 is
        // always worth retrying, so it always says when.
        if (reply.status === 503) {
            r.headersOut['Retry-After'] = reply.headersOut['Retry-After'] || '5';
        }
        return answer(r, reply.status, upstreamType, body);
    }
    if (reply.status === 504) {
        return answer(r, 504, 'application/json', errorBody(504, 'GatewayTimeout',
            'the model server sent no reply within ' + r.variables.front_read_timeout + '; retry with a smaller image'));
    }
    if (reply.status >= 500) {
        r.headersOut['Retry-After'] = '5';
        return answer(r, 503, 'application/json', errorBody(503, 'ServiceUnavailable',
            'the model server is not reachable; retry shortly'));
    }
    return answer(r, reply.status, upstreamType || 'application/octet-stream', body || '');
}

export default {keyOk, keysUsable, workflow};
