'use strict'
// Driven by TestKafkaJSGroup in ../clients_groups_test.go against a real
// bin/flotilla:
//
//   node consume.js BROKER GROUP TOPIC
//
// joins GROUP with kafkajs's default consumer, subscribed to TOPIC from the
// beginning (kafkajs starts a partition without a committed offset at its
// end by default), and prints one JSON line per message read in eachMessage
// ({"partition", "offset", "key", "value"}, key and value in base64) and
// one per group generation joined ({"joined": {"memberId", "assignment"}}).
// Offsets are committed the kafkajs way: autoCommit, after each batch.
//
// kafkajs's log goes to stderr (its default logger writes INFO to stdout).
// When its stdin closes, it disconnects — which commits what was read and
// leaves the group — and exits 0; if the consumer crashes for good, it
// exits 1 at once.
const { Kafka, logLevel } = require('kafkajs')

async function main () {
  const [broker, groupId, topic] = process.argv.slice(2)
  if (!topic) throw new Error('usage: consume.js BROKER GROUP TOPIC')

  // Every setting is kafkajs's default but the log, which only makes a
  // failure easier to read (stderr is shown when the test fails).
  const logCreator = () => ({ namespace, label, log }) => {
    process.stderr.write(JSON.stringify({ level: label, namespace, ...log }) + '\n')
  }
  const kafka = new Kafka({ clientId: 'flotilla-kafkajs-test', brokers: [broker], logLevel: logLevel.INFO, logCreator })
  const consumer = kafka.consumer({ groupId })
  const print = obj => process.stdout.write(JSON.stringify(obj) + '\n')

  consumer.on(consumer.events.GROUP_JOIN, e => {
    print({ joined: { memberId: e.payload.memberId, assignment: e.payload.memberAssignment } })
  })
  consumer.on(consumer.events.CRASH, e => {
    if (!e.payload.restart) {
      console.error('consumer crashed:', e.payload.error)
      process.exit(1)
    }
  })

  process.stdin.on('end', () => {
    consumer.disconnect().then(() => process.exit(0), err => {
      console.error(err && err.stack ? err.stack : err)
      process.exit(1)
    })
  })
  process.stdin.resume()

  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      print({
        partition,
        offset: message.offset,
        key: message.key ? message.key.toString('base64') : '',
        value: message.value ? message.value.toString('base64') : ''
      })
    }
  })
}

main().catch(err => {
  console.error(err && err.stack ? err.stack : err)
  process.exit(1)
})
