//! tonic codecs for messages known only at run time. Requests go out as a
//! `DynamicMessage` or as wire bytes the fast transcoder wrote; answers come
//! back decoded into the method's output type (`DynamicCodec`, for callers
//! that read fields) or as wire bytes (`WireCodec`, for callers that render
//! them: the fast transcoder reads the bytes itself).

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A request message in either form.
pub trait Outgoing: Send + 'static {
    fn write(self, dst: &mut EncodeBuf<'_>) -> Result<(), Status>;
}

impl Outgoing for DynamicMessage {
    fn write(self, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        self.encode(dst).map_err(|e| Status::internal(format!("cannot encode request: {e}")))
    }
}

impl Outgoing for Bytes {
    fn write(self, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(self);
        Ok(())
    }
}

/// Writes requests of type `M`.
#[derive(Debug)]
pub struct Writer<M>(PhantomData<fn(M)>);

impl<M: Outgoing> Encoder for Writer<M> {
    type Item = M;
    type Error = Status;

    fn encode(&mut self, item: M, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.write(dst)
    }
}

/// Requests of type `M`; answers decoded into `output`.
#[derive(Debug)]
pub struct DynamicCodec<M = DynamicMessage> {
    output: MessageDescriptor,
    requests: PhantomData<fn(M)>,
}

impl<M> DynamicCodec<M> {
    pub fn new(output: MessageDescriptor) -> Self {
        Self { output, requests: PhantomData }
    }
}

#[derive(Debug, Clone)]
pub struct DynamicDecoder {
    output: MessageDescriptor,
}

impl<M: Outgoing> Codec for DynamicCodec<M> {
    type Encode = M;
    type Decode = DynamicMessage;
    type Encoder = Writer<M>;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        Writer(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder { output: self.output.clone() }
    }
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        DynamicMessage::decode(self.output.clone(), src)
            .map(Some)
            .map_err(|e| Status::internal(format!("backend sent an undecodable {}: {e}", self.output.full_name())))
    }
}

/// Requests of type `M`; answers in wire form.
#[derive(Debug)]
pub struct WireCodec<M>(PhantomData<fn(M)>);

impl<M> Default for WireCodec<M> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

#[derive(Debug, Clone)]
pub struct WireDecoder;

impl<M: Outgoing> Codec for WireCodec<M> {
    type Encode = M;
    type Decode = Bytes;
    type Encoder = Writer<M>;
    type Decoder = WireDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        Writer(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder
    }
}

impl Decoder for WireDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

/// Wire bytes both ways.
pub type RawCodec = WireCodec<Bytes>;
