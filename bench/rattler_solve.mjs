// Solves conda specs with rattler (resolvo) through the npm package @conda-org/rattler, the peer of
// `ocibuild solve` in bench/conda_solve_bench.sh. Prints the answer as sorted "name version build"
// lines on stdout (virtual packages left out) and timings on stderr.
//
//   node bench/rattler_solve.mjs -c CHANNEL_URL [-p linux-64] [--virtual-package NAME=VERSION[=BUILD]]...
//        SPEC...
//
// The package's only solve API is simpleSolve(specs, channels, platforms, lockedPackages): it fetches
// the channel's repodata over HTTP (its gateway, reading only the records of names reachable from
// the specs) and solves with resolvo. It has no virtual-package argument, so virtual packages go in
// as locked packages: a locked record is the only candidate for its name, as a virtual package is.
// The API does not split loading from solving. To approximate the split, fetch() is wrapped: the
// time until the last repodata body has been read is reported as "download", the rest as
// "parse+solve".
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const moduleDir = process.env.RATTLER_JS_DIR || path.join(here, ".node", "node_modules", "@conda-org", "rattler");
const require = createRequire(import.meta.url);

function usage(msg) {
    if (msg) console.error(`rattler_solve: ${msg}`);
    console.error("usage: rattler_solve.mjs -c CHANNEL_URL [-p PLATFORM] [--virtual-package NAME=VERSION[=BUILD]]... SPEC...");
    process.exit(2);
}

const specs = [];
const channels = [];
const virtuals = [];
let platform = "linux-64";
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === "-c" || a === "--channel") channels.push(value());
    else if (a === "-p" || a === "--platform") platform = value();
    else if (a === "--virtual-package") virtuals.push(value());
    else if (a === "-h" || a === "--help") usage();
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else specs.push(a);
}
if (channels.length === 0 || specs.length === 0) usage("need -c CHANNEL_URL and at least one SPEC");

const locked = virtuals.map((text) => {
    const [name, version, build = "0"] = text.split("=");
    if (!name || !version) usage(`bad --virtual-package ${text}: want NAME=VERSION[=BUILD]`);
    const filename = `${name}-${version}-${build}.conda`;
    return {
        url: `https://virtual.invalid/${platform}/${filename}`,
        packageName: name,
        version,
        build,
        buildNumber: 0,
        filename,
        subdir: platform,
        depends: [],
    };
});

// Timing of the downloads, through a wrapped fetch (Node's global fetch is what the WASM calls).
const started = performance.now();
let lastBodyDone = 0;
let bytes = 0;
const realFetch = globalThis.fetch;
globalThis.fetch = async (...args) => {
    const response = await realFetch(...args);
    if (response.body) {
        // The WASM reads bodies through response.body.getReader(): count through a pass-through.
        const counted = response.body.pipeThrough(
            new TransformStream({
                transform(chunk, controller) {
                    bytes += chunk.byteLength;
                    lastBodyDone = performance.now();
                    controller.enqueue(chunk);
                },
                flush() {
                    lastBodyDone = performance.now();
                },
            }),
        );
        Object.defineProperty(response, "body", { value: counted });
    }
    return response;
};

const rattler = require(path.join(moduleDir, "dist", "rattler.node.cjs"));
const loaded = performance.now();
let solved;
try {
    solved = await rattler.simpleSolve(specs, channels, [platform, "noarch"], locked);
} catch (e) {
    console.error(`rattler_solve: solve failed: ${e?.message ?? e}`);
    process.exit(1);
}
const done = performance.now();
const lines = solved
    .filter((p) => !p.packageName.startsWith("__"))
    .map((p) => `${p.packageName} ${p.version} ${p.build}`)
    .sort();
process.stdout.write(lines.join("\n") + "\n");
const download = lastBodyDone > loaded ? lastBodyDone - loaded : NaN;
console.error(
    `rattler: ${lines.length} packages; module load ${(loaded - started).toFixed(0)} ms, ` +
        `download ${download.toFixed(0)} ms (${(bytes / 1e6).toFixed(1)} MB), ` +
        `parse+solve ${(done - loaded - (download || 0)).toFixed(0)} ms, total ${(done - started).toFixed(0)} ms`,
);
