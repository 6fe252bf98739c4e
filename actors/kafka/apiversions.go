package kafka

import "github.com/twmb/franz-go/pkg/kmsg"

// apiVersionsResponse answers an ApiVersions request of a version we serve.
// From v3 the client names its software; Kafka refuses names that do not
// match [a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])? with INVALID_REQUEST.
func apiVersionsResponse(req *kmsg.ApiVersionsRequest, served *versions) *kmsg.ApiVersionsResponse {
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if req.Version >= 3 && (!validSoftwareField(req.ClientSoftwareName) || !validSoftwareField(req.ClientSoftwareVersion)) {
		resp.ErrorCode = codeInvalidRequest
		return resp
	}
	resp.ApiKeys = served.advertised
	return resp
}

// unsupportedApiVersionsResponse answers an ApiVersions request of a version
// we do not serve (KIP-511): UNSUPPORTED_VERSION in a v0 response that still
// lists our versions, so the client can retry with one we have. It is sent
// with a v0 header, like every ApiVersions response.
func unsupportedApiVersionsResponse(served *versions) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = codeUnsupportedVersion
	resp.ApiKeys = served.advertised
	return resp
}

// validSoftwareField reports whether s matches Kafka's pattern for client
// software names and versions.
func validSoftwareField(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
