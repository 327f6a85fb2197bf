#!/usr/bin/env node
// Compiles contracts/src/*.sol offline with the pinned solcjs (standard-JSON) and writes one
// artifact per contract into the perun-eth package, and the app contracts of perun-apps
// (plugins/perun-apps/contracts/*.sol, which import the core sources as "perun/App.sol", ...)
// into that package. `--check` compiles in memory and fails if the committed artifacts differ,
// so CI proves they are reproducible from the sources.
//
//   node contracts/build.mjs               write artifacts
//   node contracts/build.mjs --check       verify artifacts (exit 1 if stale)
//   node contracts/build.mjs --app X.sol   compile one app contract (named as its file) with the
//                                          apps' settings and print its artifact (JSON) to stdout

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const SRC = join(HERE, "src");
const OUT = join(HERE, "..", "plugins", "perun-eth", "src", "perun_eth", "artifacts");
const APPS_SRC = join(HERE, "..", "plugins", "perun-apps", "contracts");
const APPS_OUT = join(HERE, "..", "plugins", "perun-apps", "src", "perun_apps", "artifacts");
// App sources import the core contracts under this prefix ("perun/App.sol", "perun/Channel.sol").
const CORE_PREFIX = "perun/";

// Contracts that get an artifact (libraries and abstract contracts are compiled in).
const CONTRACTS = [
  "Adjudicator",
  "AssetHolderETH",
  "AssetHolderERC20",
  "TrivialApp",
  "PaymentApp",
  "PerunToken",
];

// Pinned compiler settings: part of every artifact, so a change shows up in --check.
const SETTINGS = {
  evmVersion: "paris",
  optimizer: { enabled: true, runs: 10000 },
  viaIR: true,
  // No metadata hash or CBOR trailer: the bytecode depends only on sources and settings.
  metadata: { bytecodeHash: "none", appendCBOR: false },
  outputSelection: {
    "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
  },
};

// Optimizer runs per contract where the default does not fit: the runs weigh deployment
// (code size, 200 gas a byte) against execution. Chosen so that both the deployment and the
// transactions of each contract stay within 0.85x of the reference figures where that is
// possible (reference figures in docs/plugins/ethereum-contracts.md; measured by plugins/perun-eth/tests/test_gas.py).
const RUNS = {
  Adjudicator: 1000,
  PerunToken: 2000,
  TrivialApp: 200,
};

function settingsOf(name) {
  const runs = RUNS[name];
  return runs === undefined ? SETTINGS : { ...SETTINGS, optimizer: { enabled: true, runs } };
}

function loadSolc() {
  const require = createRequire(join(HERE, "package.json"));
  try {
    return require("solc");
  } catch {
    console.error("solc is not installed: run `npm ci --prefix contracts` first");
    process.exit(2);
  }
}

function readSource(path) {
  // Normalise line endings so a checkout with CRLF compiles to the same bytes.
  return readFileSync(path, "utf8").replace(/\r\n/g, "\n");
}

function readSources(dir = SRC, prefix = "src/") {
  const sources = {};
  for (const name of readdirSync(dir).filter((f) => f.endsWith(".sol")).sort()) {
    sources[`${prefix}${name}`] = { content: readSource(join(dir, name)) };
  }
  return sources;
}

function compile(solc, sources, settings) {
  const input = { language: "Solidity", sources, settings };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = (output.errors ?? []).filter((e) => e.severity === "error");
  for (const e of output.errors ?? []) console.error(e.formattedMessage);
  if (problems.length > 0) process.exit(1);
  return output;
}

function artifacts(solc, sources, names = CONTRACTS, prefix = "src/") {
  const sourceHashes = {};
  for (const [path, { content }] of Object.entries(sources)) {
    sourceHashes[path] = "sha256:" + createHash("sha256").update(content).digest("hex");
  }
  // One compilation per distinct settings (most contracts share the default).
  const outputs = new Map();
  const files = {};
  for (const name of names) {
    const full = settingsOf(name);
    const key = JSON.stringify(full);
    if (!outputs.has(key)) outputs.set(key, compile(solc, sources, full));
    const c = outputs.get(key).contracts[`${prefix}${name}.sol`]?.[name];
    if (!c) throw new Error(`no output for ${name}`);
    const { outputSelection, ...settings } = full;
    const artifact = {
      contractName: name,
      sourceName: `${prefix}${name}.sol`,
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      compiler: { name: "solc", version: solc.version() },
      settings,
      sources: sourceHashes,
    };
    files[`${name}.json`] = JSON.stringify(artifact, null, 2) + "\n";
  }
  return files;
}

// The app contracts: the core sources under CORE_PREFIX beside the apps' own (one compilation,
// separate from the core's, so the core artifacts do not depend on the apps).
function appSources(extra = {}) {
  const sources = {};
  for (const [path, src] of Object.entries(readSources())) {
    sources[CORE_PREFIX + path.slice("src/".length)] = src;
  }
  return { ...sources, ...extra };
}

function appNames(dir) {
  return existsSync(dir)
    ? readdirSync(dir).filter((f) => f.endsWith(".sol")).sort().map((f) => f.slice(0, -4))
    : [];
}

function checkDir(out, files) {
  const stale = [];
  for (const [file, text] of Object.entries(files)) {
    const path = join(out, file);
    if (!existsSync(path) || readFileSync(path, "utf8") !== text) stale.push(file);
  }
  const extra = existsSync(out)
    ? readdirSync(out).filter((f) => f.endsWith(".json") && !(f in files))
    : [];
  return [...stale, ...extra];
}

const solc = loadSolc();
const appArg = process.argv.indexOf("--app");
if (appArg >= 0) {
  const file = process.argv[appArg + 1];
  if (!file || !file.endsWith(".sol")) {
    console.error("usage: node contracts/build.mjs --app path/to/Name.sol");
    process.exit(2);
  }
  const name = basename(file, ".sol");
  const sources = appSources({ [`app/${name}.sol`]: { content: readSource(file) } });
  const files = artifacts(solc, sources, [name], "app/");
  process.stdout.write(files[`${name}.json`]);
  process.exit(0);
}

const check = process.argv.includes("--check");
const files = artifacts(solc, readSources());
const apps = appNames(APPS_SRC);
const appFiles = apps.length
  ? artifacts(solc, appSources(readSources(APPS_SRC, "perun-apps/")), apps, "perun-apps/")
  : {};

if (check) {
  const stale = [...checkDir(OUT, files), ...(apps.length ? checkDir(APPS_OUT, appFiles) : [])];
  if (stale.length) {
    console.error(
      `committed artifacts differ from a fresh build (${stale.join(", ")}); ` +
        "re-run `node contracts/build.mjs` and commit the result",
    );
    process.exit(1);
  }
  const count = Object.keys(files).length + Object.keys(appFiles).length;
  console.log(`artifacts up to date (${count} contracts, solc ${solc.version()})`);
} else {
  for (const [out, written] of [
    [OUT, files],
    [APPS_OUT, appFiles],
  ]) {
    if (!Object.keys(written).length) continue;
    mkdirSync(out, { recursive: true });
    for (const [file, text] of Object.entries(written)) writeFileSync(join(out, file), text);
    console.log(`wrote ${Object.keys(written).length} artifacts to ${out}`);
  }
}
