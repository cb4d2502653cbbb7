#!/usr/bin/env node
// Validates prometheus-operator objects (ServiceMonitor, PrometheusRule) against the operator's
// published CRD schemas, as packaged by @kubernetes-models/prometheus-operator (its models are
// generated from the operator's stripped-down CRDs; see package.json for the pinned version).
//
// Usage: node validate-crds.js [FILE]   (FILE or stdin: a JSON array of objects)
// Prints a JSON array, one entry per object, in input order:
//   {"kind", "name", "errors": [{"path", "keyword", "message"}]}
// `path` is a JSON pointer into the object. Exit 0 when the run worked (errors are data),
// 2 on unusable input.
//
// Two rules:
// 1. "schema": the package's validator (ajv, compiled from the CRD's openAPIV3Schema): types,
//    enums, patterns, required fields. `keyword` is ajv's (type, enum, pattern, required, ...).
// 2. "unknownField" (the one rule added here): a field the CRD does not declare is an error,
//    as with `kubectl apply --validate=strict` (the API server's strict field validation).
//    The CRD schemas leave unknown fields to the server, so rule 1 accepts a misspelt field
//    silently. The known fields come from the same package: its TypeScript interfaces, which
//    are generated from the same CRDs, and TypeScript's excess-property check on the object
//    written as a typed literal. Other type errors are left to rule 1.
"use strict";

const fs = require("fs");
const path = require("path");
const ts = require("typescript");
const v1 = require("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");

const PACKAGE = "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
const KINDS = ["ServiceMonitor", "PrometheusRule"];
// TypeScript's "Object literal may only specify known properties" (with and without a
// "did you mean" suggestion); it names the first unknown field of each object literal.
const EXCESS_PROPERTY_CODES = new Set([2353, 2561]);

function pointer(parent, key) {
  return `${parent}/${String(key).replace(/~/g, "~0").replace(/\//g, "~1")}`;
}

function schemaErrors(obj) {
  const Model = v1[obj.kind];
  try {
    new Model(obj).validate();
    return [];
  } catch (error) {
    if (!Array.isArray(error.errors)) throw error;
    return error.errors.map((e) => ({
      path:
        e.keyword === "required"
          ? pointer(e.instancePath, e.params.missingProperty)
          : e.instancePath,
      keyword: e.keyword,
      message: e.message,
    }));
  }
}

// Writes `value` as a TypeScript literal and records, for every property key, the offset of the
// key in the text and its JSON pointer, so a compiler diagnostic maps back to a path.
function literal(value, where, out) {
  if (Array.isArray(value)) {
    out.text += "[";
    value.forEach((item, index) => {
      if (index) out.text += ",";
      literal(item, pointer(where, index), out);
    });
    out.text += "]";
  } else if (value !== null && typeof value === "object") {
    out.text += "{";
    Object.entries(value).forEach(([key, item], index) => {
      if (index) out.text += ",";
      out.keys.set(out.text.length, pointer(where, key));
      out.text += `${JSON.stringify(key)}:`;
      literal(item, pointer(where, key), out);
    });
    out.text += "}";
  } else {
    out.text += JSON.stringify(value);
  }
}

function unknownFieldErrors(objects) {
  const file = path.join(__dirname, "__crd_objects__.ts");
  const out = { text: "", keys: new Map() };
  const owner = []; // [start offset, object index] of each typed literal
  for (const kind of KINDS) {
    out.text += `import type { I${kind} } from "${PACKAGE}/${kind}";\n`;
  }
  objects.forEach((obj, index) => {
    out.text += `export const object${index}: I${obj.kind} = `;
    owner.push([out.text.length, index]);
    literal(obj, "", out);
    out.text += ";\n";
  });
  const options = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    module: ts.ModuleKind.Node16,
    moduleResolution: ts.ModuleResolutionKind.Node16,
    target: ts.ScriptTarget.ES2020,
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.fileExists = (name) => name === file || ts.sys.fileExists(name);
  host.readFile = (name) => (name === file ? out.text : readFile(name));
  host.getSourceFile = (name, version, ...rest) =>
    name === file
      ? ts.createSourceFile(name, out.text, version)
      : getSourceFile(name, version, ...rest);
  const program = ts.createProgram([file], options, host);
  const errors = objects.map(() => []);
  const diagnostics = ts.getPreEmitDiagnostics(program);
  for (const d of diagnostics) {
    if (d.file === undefined || d.file.fileName !== file) {
      throw new Error(`type check failed outside the objects: ${flatten(d)}`);
    }
    if (!EXCESS_PROPERTY_CODES.has(d.code)) continue; // left to the schema rule
    const where = out.keys.get(d.start);
    if (where === undefined) throw new Error(`unmapped diagnostic: ${flatten(d)}`);
    const index = owner.filter(([start]) => start <= d.start).pop()[1];
    const field = where.split("/").pop();
    const message = `field ${JSON.stringify(field)} is not declared by the CRD`;
    errors[index].push({ path: where, keyword: "unknownField", message });
  }
  return errors;
}

function flatten(diagnostic) {
  return ts.flattenDiagnosticMessageText(diagnostic.messageText, " ");
}

function main() {
  const objects = JSON.parse(fs.readFileSync(process.argv[2] || 0, "utf8"));
  if (!Array.isArray(objects)) throw new Error("expected a JSON array of objects");
  for (const obj of objects) {
    if (!KINDS.includes(obj && obj.kind)) {
      throw new Error(`no CRD model for kind ${JSON.stringify(obj && obj.kind)}`);
    }
  }
  const unknown = unknownFieldErrors(objects);
  const results = objects.map((obj, index) => ({
    kind: obj.kind,
    name: (obj.metadata || {}).name ?? null,
    errors: [...schemaErrors(obj), ...unknown[index]],
  }));
  process.stdout.write(JSON.stringify(results) + "\n");
}

try {
  main();
} catch (error) {
  process.stderr.write(`validate-crds: ${error.message}\n`);
  process.exit(2);
}
