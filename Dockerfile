# wfsched: one static binary on a distroless base, run as non-root.
#   docker build -t wfsched .
#   docker run --rm -p 8001:8001 wfsched router --listen 0.0.0.0:8001 --backends http://vllm:8000
# The build stage runs scripts/build-static.sh, which CI runs too (Docker's
# engine is not available there).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN VERSION=$VERSION scripts/build-static.sh /out/wfsched

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wfsched /wfsched
USER nonroot:nonroot
EXPOSE 8001
ENTRYPOINT ["/wfsched"]
