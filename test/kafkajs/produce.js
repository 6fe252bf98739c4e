'use strict'
// Driven by TestKafkaJS in ../clients_test.go against a real bin/flotilla:
//
//   node produce.js BROKER TOPIC PARTITIONS MODE INPUT OUTPUT
//
// creates TOPIC with kafkajs's admin client, produces the records of INPUT
// (JSON: [{"key": base64, "value": base64}, ...]) in order, in sends of 100,
// with kafkajs's default producer (MODE "default") or its idempotent one
// (MODE "idempotent"), asks for the topic's offsets, and writes what kafkajs
// reported to OUTPUT as JSON. The Go test reads the records back.
//
// kafkajs has no consumer without a consumer group (it always goes through
// FindCoordinator/JoinGroup/SyncGroup), so the consume side here is
// franz-go's plain consumer; consume.js is kafkajs's group consumer.
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

const CHUNK = 100

async function main () {
  const [broker, topic, partitions, mode, input, output] = process.argv.slice(2)
  if (!output) throw new Error('usage: produce.js BROKER TOPIC PARTITIONS MODE INPUT OUTPUT')
  const records = JSON.parse(fs.readFileSync(input, 'utf8'))

  // Every setting is kafkajs's default but the log level, which only
  // makes a failure easier to read.
  const kafka = new Kafka({ clientId: 'flotilla-kafkajs-test', brokers: [broker], logLevel: logLevel.WARN })

  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: Number(partitions), replicationFactor: 1 }],
    waitForLeaders: true
  })

  let producerConfig = {}
  if (mode === 'idempotent') {
    // kafkajs requires at most one request in flight for idempotence.
    producerConfig = { idempotent: true, maxInFlightRequests: 1 }
  } else if (mode !== 'default') {
    throw new Error(`unknown mode ${mode}`)
  }
  const producer = kafka.producer(producerConfig)
  await producer.connect()
  const sends = []
  for (let first = 0; first < records.length; first += CHUNK) {
    const messages = records.slice(first, first + CHUNK).map(r => ({
      key: Buffer.from(r.key, 'base64'),
      value: Buffer.from(r.value, 'base64')
    }))
    const meta = await producer.send({ topic, messages })
    sends.push({
      first,
      count: messages.length,
      partitions: meta.map(m => ({ partition: m.partition, errorCode: m.errorCode, baseOffset: Number(m.baseOffset) }))
    })
  }
  await producer.disconnect()

  const offsets = await admin.fetchTopicOffsets(topic)
  await admin.disconnect()

  fs.writeFileSync(output, JSON.stringify({
    created,
    sends,
    offsets: offsets.map(o => ({ partition: o.partition, low: Number(o.low), high: Number(o.high) }))
  }))
}

main().catch(err => {
  console.error(err && err.stack ? err.stack : err)
  process.exit(1)
})
