#!/usr/bin/env node
// Compiles contracts/src/*.sol offline with the pinned solcjs (standard-JSON) and writes one
// artifact per contract into the perun-eth package. `--check` compiles in memory and fails if
// the committed artifacts differ, so CI proves they are reproducible from the sources.
//
//   node contracts/build.mjs           write artifacts
//   node contracts/build.mjs --check   verify artifacts (exit 1 if stale)

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const SRC = join(HERE, "src");
const OUT = join(HERE, "..", "plugins", "perun-eth", "src", "perun_eth", "artifacts");

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

function readSources() {
  const sources = {};
  for (const name of readdirSync(SRC).filter((f) => f.endsWith(".sol")).sort()) {
    // Normalise line endings so a checkout with CRLF compiles to the same bytes.
    const content = readFileSync(join(SRC, name), "utf8").replace(/\r\n/g, "\n");
    sources[`src/${name}`] = { content };
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

function artifacts(solc, sources) {
  const sourceHashes = {};
  for (const [path, { content }] of Object.entries(sources)) {
    sourceHashes[path] = "sha256:" + createHash("sha256").update(content).digest("hex");
  }
  // One compilation per distinct settings (most contracts share the default).
  const outputs = new Map();
  const files = {};
  for (const name of CONTRACTS) {
    const full = settingsOf(name);
    const key = JSON.stringify(full);
    if (!outputs.has(key)) outputs.set(key, compile(solc, sources, full));
    const c = outputs.get(key).contracts[`src/${name}.sol`]?.[name];
    if (!c) throw new Error(`no output for ${name}`);
    const { outputSelection, ...settings } = full;
    const artifact = {
      contractName: name,
      sourceName: `src/${name}.sol`,
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

const check = process.argv.includes("--check");
const solc = loadSolc();
const sources = readSources();
const files = artifacts(solc, sources);

if (check) {
  const stale = [];
  for (const [file, text] of Object.entries(files)) {
    const path = join(OUT, file);
    if (!existsSync(path) || readFileSync(path, "utf8") !== text) stale.push(file);
  }
  const extra = existsSync(OUT)
    ? readdirSync(OUT).filter((f) => f.endsWith(".json") && !(f in files))
    : [];
  if (stale.length || extra.length) {
    console.error(
      `committed artifacts differ from a fresh build (${[...stale, ...extra].join(", ")}); ` +
        "re-run `node contracts/build.mjs` and commit the result",
    );
    process.exit(1);
  }
  console.log(`artifacts up to date (${Object.keys(files).length} contracts, solc ${solc.version()})`);
} else {
  mkdirSync(OUT, { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(join(OUT, file), text);
  console.log(`wrote ${Object.keys(files).length} artifacts to ${OUT}`);
}
