/**
 * The topic a benchmark writes to or reads from: created with the requested partition count and
 * configs when it does not exist; an existing topic is used as it is, unless its partition count
 * or one of the configs asked for (`flush`) differs (the figures would then not mean what the
 * command line says).
 */
import { Admin, type TopicDescription } from '../client/admin.js';
import type { ConnectionOptions } from '../client/connection.js';
import { isStrataClientError } from '../client/errors.js';
import { plural } from '../common/plural.js';

export class BenchSetupError extends Error {}

export interface TopicRequest {
  name: string;
  /** null: whatever the existing topic has (1 when it is created). */
  partitions: number | null;
  /** Topic configs (Kafka names) for a topic this creates; an existing one keeps its own. */
  configs: Record<string, string>;
}

export interface BenchTopic {
  description: TopicDescription;
  /** True when this run created it. */
  created: boolean;
}

export async function ensureTopic(admin: Admin, request: TopicRequest): Promise<BenchTopic> {
  try {
    const description = await admin.describeTopic(request.name);
    if (request.partitions !== null && description.partitions.length !== request.partitions) {
      throw new BenchSetupError(
        `topic "${request.name}" exists with ${plural(description.partitions.length, 'partition')}, not the ${request.partitions} asked for; give another --topic`,
      );
    }
    for (const [key, value] of Object.entries(request.configs)) {
      const effective = description.configs[key];
      // A server that reports no such config (the no-op server) has nothing to contradict.
      if (effective !== undefined && effective !== value) {
        throw new BenchSetupError(
          `topic "${request.name}" exists with ${key}=${effective}, not the ${key}=${value} asked for; give another --topic, or alter it with strata topics alter ${request.name} --config ${key}=${value}`,
        );
      }
    }
    return { description, created: false };
  } catch (error) {
    if (!isStrataClientError(error, 'NOT_FOUND')) throw error;
  }
  try {
    const description = await admin.createTopic(request.name, { partitions: request.partitions ?? 1, configs: request.configs });
    return { description, created: true };
  } catch (error) {
    // Another client created it meanwhile: use it as it is.
    if (isStrataClientError(error, 'ALREADY_EXISTS')) return { description: await admin.describeTopic(request.name), created: false };
    throw error;
  }
}

export async function describe(connection: ConnectionOptions, name: string): Promise<TopicDescription> {
  const admin = new Admin(connection);
  try {
    return await admin.describeTopic(name);
  } finally {
    await admin.close();
  }
}
