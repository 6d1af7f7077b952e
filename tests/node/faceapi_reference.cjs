#!/usr/bin/env node
/*
 * Reference outputs of face-api's own networks, run by @tensorflow/tfjs on its pure-JavaScript CPU
 * backend (no tfjs-node, no WASM, no WebGL), for tests/test_faceapi_conformance.py.
 *
 *   node faceapi_reference.cjs FACEAPI_PACKAGE_DIR TFJS_PACKAGE_DIR JOB.json OUT_DIR
 *
 * FACEAPI_PACKAGE_DIR: `npm pack @vladmandic/face-api@1.7.15`, unpacked (its package/ folder);
 * TFJS_PACKAGE_DIR: `npm pack @tensorflow/tfjs@4.22.0`, unpacked (its package/ folder).
 * JOB.json: {"images": [{"file": "a.u8", "height": H, "width": W}, ...], "nets": ["expression", ...]}
 * where each file holds H*W*3 RGB bytes (row-major). Every image goes through face-api's own
 * NetInput pipeline (centred pad to square, resizeBilinear) and network, as one batch per net.
 * OUT_DIR receives little-endian float32 files <net>.<output>.f32 and results.json listing their shapes.
 *
 * face-api's Node build (dist/face-api.node-wasm.js) requires '@tensorflow/tfjs' and
 * '@tensorflow/tfjs-backend-wasm': the first is pointed at tfjs's self-contained bundle
 * (dist/tf.js); the second is given as an empty module, since only the CPU backend is used.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const Module = require('module');

function loadLibraries(faceapiDir, tfjsDir) {
  const tfBundle = path.join(tfjsDir, 'dist', 'tf.js');
  const faceapiBundle = path.join(faceapiDir, 'dist', 'face-api.node-wasm.js');
  for (const file of [tfBundle, faceapiBundle]) {
    if (!fs.existsSync(file)) throw new Error(`missing ${file}: unpack the npm pack tarballs (see the header)`);
  }
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    return request === '@tensorflow/tfjs' ? tfBundle : resolve.call(this, request, ...rest);
  };
  const load = Module._load;
  Module._load = function (request, ...rest) {
    return request === '@tensorflow/tfjs-backend-wasm' ? {} : load.call(this, request, ...rest);
  };
  return { tf: require(tfBundle), faceapi: require(faceapiBundle) };
}

function readImages(tf, job, jobDir) {
  return job.images.map(({ file, height, width }) => {
    const bytes = fs.readFileSync(path.join(jobDir, file));
    if (bytes.length !== height * width * 3) throw new Error(`${file}: ${bytes.length} bytes, expected ${height}x${width}x3`);
    return tf.tensor3d(Int32Array.from(bytes), [height, width, 3], 'int32');
  });
}

function writeTensor(outDir, results, name, tensor) {
  const data = tensor.dataSync();
  fs.writeFileSync(path.join(outDir, `${name}.f32`), Buffer.from(new Float32Array(data).buffer));
  results[name] = tensor.shape;
}

const NETS = {
  async expression(tf, faceapi, input, save) {
    const net = faceapi.nets.faceExpressionNet;
    save('expression.input', input.toBatchTensor(112, true));
    save('expression.features', net.faceFeatureExtractor.forwardInput(input));
    save('expression.logits', net.runNet(input));
    save('expression.probabilities', net.forwardInput(input));
  },
  async age_gender(tf, faceapi, input, save) {
    const net = faceapi.nets.ageGenderNet;
    const raw = net.runNet(input);
    save('age_gender.age', raw.age);
    save('age_gender.gender_logits', raw.gender);
    save('age_gender.gender_probabilities', net.forwardInput(input).gender);
  },
  async recognition(tf, faceapi, input, save) {
    const net = faceapi.nets.faceRecognitionNet;
    save('recognition.input', input.toBatchTensor(150, true));
    const descriptors = await net.computeFaceDescriptor(input);
    save('recognition.descriptors', tf.tensor2d((Array.isArray(descriptors) ? descriptors : [descriptors])
      .map((d) => Array.from(d))));
  },
};
const WEIGHTS = { expression: 'faceExpressionNet', age_gender: 'ageGenderNet', recognition: 'faceRecognitionNet' };

async function main(argv) {
  if (argv.length !== 4) throw new Error('usage: node faceapi_reference.cjs FACEAPI_DIR TFJS_DIR JOB.json OUT_DIR');
  const [faceapiDir, tfjsDir, jobFile, outDir] = argv;
  const { tf, faceapi } = loadLibraries(faceapiDir, tfjsDir);
  await tf.setBackend('cpu');
  await tf.ready();
  const job = JSON.parse(fs.readFileSync(jobFile, 'utf8'));
  const images = readImages(tf, job, path.dirname(jobFile));
  const results = { backend: tf.getBackend(), tfjs: tf.version.tfjs, faceapi: faceapi.version, shapes: {} };
  const save = (name, tensor) => writeTensor(outDir, results.shapes, name, tensor);
  for (const net of job.nets) {
    if (!NETS[net]) throw new Error(`unknown net ${net}; known: ${Object.keys(NETS).join(', ')}`);
    await faceapi.nets[WEIGHTS[net]].loadFromDisk(path.join(faceapiDir, 'model'));
    const input = await faceapi.toNetInput(images);
    await NETS[net](tf, faceapi, input, save);
  }
  fs.writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(results));
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
