#!/usr/bin/env node
// A Node.js client of the model manager: lists the models the records
// service holds, installs one source through the installer and follows the
// install's Watch stream to its end, printing each change.
//
//   cd examples/node && npm ci
//   node install_model.js --installer 127.0.0.1:7003 --records 127.0.0.1:7001 \
//       --ca /etc/mm/ca.pem --token-file /run/secrets/mm-token \
//       --source stabilityai/sdxl-vae
//
// TLS when --ca is given (the server certificate must name the address's
// host, or pass --server-name); the bearer token (the services'
// --auth-token-file) goes with every call. Addresses may list replicas in
// gRPC's form, ipv4:HOST:PORT,HOST:PORT: calls then go round-robin.
// The stubs are made at run time from proto/ by @grpc/proto-loader (no
// generated code). Exit status: 0 when the install completed, 1 when it
// ended otherwise, 2 for a bad command line or a failed call.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const CALL_TIMEOUT_MS = 30 * 1000;

function usage(message) {
  process.stderr.write(
      `install_model.js: ${message}\n` +
      'usage: node install_model.js --installer ADDR --records ADDR ' +
      '--source SOURCE [--ca PEM] [--token-file FILE] [--server-name NAME] ' +
      '[--proto-dir DIR] [--timeout SECONDS]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const args = {
    protoDir: path.join(__dirname, '..', '..', 'proto'),
    timeout: 600,
  };
  const names = {
    '--installer': 'installer',
    '--records': 'records',
    '--source': 'source',
    '--ca': 'ca',
    '--token-file': 'tokenFile',
    '--server-name': 'serverName',
    '--proto-dir': 'protoDir',
    '--timeout': 'timeout',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const name = names[argv[i]];
    if (name === undefined) usage(`unknown argument ${argv[i]}`);
    if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
    args[name] = argv[i + 1];
  }
  for (const required of ['installer', 'records', 'source']) {
    if (!args[required]) usage(`--${required} is required`);
  }
  return args;
}

function loadServices(protoDir) {
  const definition = protoLoader.loadSync(
      ['modelmanager/v1/records.proto', 'modelmanager/v1/installer.proto'], {
        includeDirs: [protoDir],
        keepCase: true,  // field names as in the .proto files
        longs: String,  // int64 as decimal strings: no precision lost
        enums: String,
        defaults: true,
        oneofs: true,
      });
  return grpc.loadPackageDefinition(definition).modelmanager.v1;
}

function credentials(args) {
  let channel;
  if (args.ca) {
    channel = grpc.credentials.createSsl(fs.readFileSync(args.ca));
  } else {
    // Without TLS, grpc-js sends no call credentials; a token-protected
    // service off TLS accepts loopback clients only, and this example
    // requires TLS for the token.
    if (args.tokenFile) usage('--token-file needs --ca (TLS)');
    return grpc.credentials.createInsecure();
  }
  if (!args.tokenFile) return channel;
  // The token is read once; it is never printed.
  const token = fs.readFileSync(args.tokenFile, 'utf8').trim();
  const bearer = grpc.credentials.createFromMetadataGenerator(
      (_params, callback) => {
        const metadata = new grpc.Metadata();
        metadata.add('authorization', `Bearer ${token}`);
        callback(null, metadata);
      });
  return grpc.credentials.combineChannelCredentials(channel, bearer);
}

function channelOptions(address, args) {
  const options = {};
  if (args.serverName) {
    options['grpc.ssl_target_name_override'] = args.serverName;
  }
  if (address.startsWith('ipv4:') || address.startsWith('ipv6:')) {
    // Replicas: spread the calls, skip the ones that do not answer; the
    // name checked against the certificate is the first address's host.
    options['grpc.service_config'] =
        JSON.stringify({loadBalancingConfig: [{round_robin: {}}]});
    const first = address.slice(5).split(',')[0];
    options['grpc.default_authority'] = first;
  }
  return options;
}

function deadline(ms) {
  return new Date(Date.now() + ms);
}

// A unary call as a promise.
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](
        request, {deadline: deadline(CALL_TIMEOUT_MS)}, (error, response) => {
          if (error) reject(error); else resolve(response);
        });
  });
}

async function listModels(records) {
  const models = [];
  let pageToken = '';
  do {
    const page = await call(
        records, 'ListModels', {page_size: 1000, page_token: pageToken});
    models.push(...page.models);
    pageToken = page.next_page_token;
  } while (pageToken);
  return models;
}

function describe(job) {
  const progress = job.total_bytes !== '0' ?
      ` ${job.bytes}/${job.total_bytes} bytes` :
      '';
  const message = job.status_message ? ` (${job.status_message})` : '';
  return `${job.state}${progress}${message}`;
}

// Follows WatchInstall until the final message (done = true). A stream
// that breaks (a replica going away) is watched again from the last
// revision seen, until the overall deadline.
async function follow(installer, id, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let since = '0';
  let eventsSeen = 0;
  for (;;) {
    const final = await new Promise((resolve, reject) => {
      const stream = installer.WatchInstall(
          {id, since_revision: since}, {deadline: new Date(end)});
      let last = null;
      stream.on('data', (job) => {
        last = job;
        since = job.revision;
        for (; eventsSeen < job.events.length; ++eventsSeen) {
          console.log(`event ${job.events[eventsSeen].type}`);
        }
        console.log(`job ${job.id} ${describe(job)}`);
      });
      stream.on('error', (error) => {
        if (error.code === grpc.status.UNAVAILABLE && Date.now() < end) {
          resolve(null);  // watch again
        } else {
          reject(error);
        }
      });
      stream.on('end', () => resolve(last && last.done ? last : null));
    });
    if (final !== null) return final;
    if (Date.now() >= end) throw new Error(`install ${id} not done in time`);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const v1 = loadServices(args.protoDir);
  const creds = credentials(args);
  const records = new v1.ModelRecords(
      args.records, creds, channelOptions(args.records, args));
  const installer = new v1.Installer(
      args.installer, creds, channelOptions(args.installer, args));

  const models = await listModels(records);
  console.log(`${models.length} models`);
  for (const model of models) {
    console.log(`model ${model.key} ${model.type}/${model.base} ${model.name}`);
  }

  const job = await call(installer, 'CreateInstall', {source: args.source});
  console.log(`install ${job.id} of ${job.source}: ${describe(job)}`);
  const final = await follow(installer, job.id, Number(args.timeout) * 1000);
  records.close();
  installer.close();
  if (final.state !== 'INSTALL_STATE_COMPLETED') {
    console.log(`failed: ${final.error.code}: ${final.error.message}`);
    return 1;
  }
  console.log(`installed ${final.key} at ${final.config_out.path}`);
  return 0;
}

main().then((code) => process.exit(code), (error) => {
  process.stderr.write(`install_model.js: ${error.message}\n`);
  process.exit(2);
});
