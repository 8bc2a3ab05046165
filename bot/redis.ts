/**
 * ioredis for the chat adapters' shared stores (Discord's interaction claims, Slack's event
 * ids), loaded when such a store is made: without REDIS_URL a relay holds none of it.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** ioredis's client class, loaded on first use (synchronously: the stores are built so). */
export const loadRedis = () => (require('ioredis') as typeof import('ioredis')).Redis;
