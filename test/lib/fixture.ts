// The set-up the agent suites share: a fresh shelterd over HTTPS, one server (bucket and key),
// an S3 client with that server's credentials, a work directory and an agent initialised
// against it; stop() undoes all of it (SHELTER_TEST_KEEP=1 keeps the directories).
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { initAgent, type Agent } from './agent.ts';
import { reportGatewayLogs, s3Client } from './clients.ts';
import { createServer, removeDir, startGateway, tempDir, type Gateway } from './gateway.ts';

export interface AgentFixture {
  gw: Gateway;
  server: ReturnType<typeof createServer>;
  s3: S3Client;
  work: string;
  agent: Agent;
  stop(): Promise<void>;
}

export async function startAgentFixture(name: string): Promise<AgentFixture> {
  const gw = await startGateway();
  reportGatewayLogs(gw);
  const work = tempDir(`shelter-agent-${name}-`);
  let s3: S3Client | undefined;
  const stop = async () => {
    reportGatewayLogs(null);
    s3?.destroy();
    await gw.stop();
    if (process.env.SHELTER_TEST_KEEP !== '1') { removeDir(work); removeDir(gw.dataDir); }
  };
  try {
    const server = createServer(gw.dataDir, name);
    s3 = s3Client(gw, server);
    const agent = await initAgent(gw, server, { home: join(work, 'agent') });
    return { gw, server, s3, work, agent, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
