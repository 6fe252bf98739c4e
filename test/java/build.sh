#!/bin/sh
# build.sh SRC OUT builds the Kafka Java client (kafka-clients) from SRC, a
# Kafka source tree, with javac alone, and Flotilla.java against it, into
# OUT/classes. test/java_helpers_test.go runs it once per Kafka version and
# hash of this script and Flotilla.java, and caches the result.
#
# It does what Gradle's :generator and :clients projects do: compile the
# message generator, generate the protocol message classes from
# clients/src/main/resources/common/message/*.json, and compile the client.
# javac compiles the client's public API packages and whatever they reach
# through -sourcepath, so the parts of the tree that need jars the client
# declares compileOnly in build.gradle and that nothing reaches (the broker's
# OAuth JWT validation, on jose4j) are left out; Netty, compileOnly for
# Confluent's broker-side SSL engine, is on the compile classpath only, as
# in Gradle. The Debian packages: libzstd-jni-java, liblz4-java,
# libsnappy-java, libslf4j-java (run time); libjackson2-databind-java,
# libargparse4j-java, libnetty-java (build time).
set -eu
src=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
j=/usr/share/java
jackson=$j/jackson-databind.jar:$j/jackson-core.jar:$j/jackson-annotations.jar
javac="javac -J-Xmx1g -nowarn -encoding UTF-8 -proc:none -Xlint:none"

mkdir -p "$out/generator" "$out/generated" "$out/classes/kafka"
$javac -d "$out/generator" -cp "$jackson:$j/argparse4j.jar" \
	$(find "$src/generator/src/main/java" -name '*.java')
java -cp "$out/generator:$jackson:$j/argparse4j.jar" org.apache.kafka.message.MessageGenerator \
	-p org.apache.kafka.common.message -o "$out/generated/org/apache/kafka/common/message" \
	-i "$src/clients/src/main/resources/common/message" \
	-t ApiMessageTypeGenerator -m MessageDataGenerator JsonConverterGenerator >/dev/null

api=$src/clients/src/main/java/org/apache/kafka
$javac -d "$out/classes" \
	-cp "$j/zstd-jni.jar:$j/lz4-java.jar:$j/snappy-java.jar:$j/slf4j-api.jar:$jackson:$j/netty-buffer.jar:$j/netty-common.jar:$j/netty-handler.jar" \
	-sourcepath "$src/clients/src/main/java:$src/ce-events-api/src/main/java:$out/generated" \
	"$api"/clients/producer/*.java "$api"/clients/consumer/*.java "$api"/clients/admin/*.java \
	"$api"/common/serialization/*.java "$here/Flotilla.java"

# What Gradle's createVersionFile writes; the client reports it to brokers
# in ApiVersions (client_software_version).
version=$(sed -n 's/^version=//p' "$src/gradle.properties")
printf 'commitId=unknown\nversion=%s\n' "$version" >"$out/classes/kafka/kafka-version.properties"
