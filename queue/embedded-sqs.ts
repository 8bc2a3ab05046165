/**
 * The embedded default: the fauxqs SQS emulator in-process on a loopback port, with the job
 * queue and its dead-letter queue. Everything else talks to it over the real SQS wire protocol.
 */
import { CreateQueueCommand, GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { buildApp } from 'fauxqs';
import { createSqsClient } from './sqs.ts';

/** A running embedded SQS. */
export interface EmbeddedSqs {
  endpoint: string;
  queueUrl: string;
  deadLetterUrl: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

const CREDENTIALS = { accessKeyId: 'embedded', secretAccessKey: 'embedded' };

/** Start the emulator on 127.0.0.1 and create `imagine-jobs` with redrive to `imagine-jobs-dlq`. */
export async function startEmbeddedSqs(opts: {
  region: string;
  maxReceiveCount: number;
  visibilityTimeoutSeconds: number;
}): Promise<EmbeddedSqs> {
  const app = buildApp({ logger: false, defaultRegion: opts.region });
  // Loopback only: the emulator has no authentication.
  const endpoint = await app.listen({ port: 0, host: '127.0.0.1' });
  const client = createSqsClient({
    region: opts.region,
    endpoint,
    credentials: CREDENTIALS,
  });
  try {
    const dlq = await client.send(new CreateQueueCommand({ QueueName: 'imagine-jobs-dlq' }));
    const dlqAttrs = await client.send(
      new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl!, AttributeNames: ['QueueArn'] }),
    );
    const main = await client.send(
      new CreateQueueCommand({
        QueueName: 'imagine-jobs',
        Attributes: {
          VisibilityTimeout: String(opts.visibilityTimeoutSeconds),
          RedrivePolicy: JSON.stringify({
            deadLetterTargetArn: dlqAttrs.Attributes?.QueueArn,
            maxReceiveCount: opts.maxReceiveCount,
          }),
        },
      }),
    );
    return {
      endpoint,
      queueUrl: main.QueueUrl!,
      deadLetterUrl: dlq.QueueUrl!,
      region: opts.region,
      credentials: CREDENTIALS,
      stop: async () => {
        await app.close();
      },
    };
  } finally {
    client.destroy();
  }
}
